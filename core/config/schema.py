"""The typed, validated form of a llama-swap `config.yaml` (plus Switchyard's own keys)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Literal

from core.config.source import Position

PROTECTED_PARAMS = frozenset({"model"})
DEFAULT_GROUP_ID = "(default)"
DEFAULT_CONCURRENCY_LIMIT = 10
DEFAULT_UPSTREAM_IGNORE_PATHS = (r".*\.(js|json|css|png|gif|jpg|jpeg|ico|txt)$",)


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    path: str
    message: str
    position: Position | None = None
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"line {self.position.line}, column {self.position.column}: " if self.position else ""
        return f"{where}{self.path}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "message": self.message,
            "line": self.position.line if self.position else None,
            "column": self.position.column if self.position else None,
            "severity": self.severity,
        }


class ConfigError(ValueError):
    """The config could not be loaded; `problems` lists every error found."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems) or "invalid config")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Proxy timeouts in seconds; 0 disables one."""

    connect: float = 30
    keepalive: float = 30
    response_header: float = 0
    tls_handshake: float = 10
    idle_conn: float = 90
    #: the whole response body after its headers (a Switchyard addition; off by default: streams may run long)
    body: float = 0


@dataclass(frozen=True, slots=True)
class Filters:
    strip_params: tuple[str, ...] = ()
    set_params: dict[str, Any] = field(default_factory=dict)
    set_params_by_id: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.strip_params or self.set_params or self.set_params_by_id)


@dataclass(frozen=True, slots=True)
class Capabilities:
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    tools: bool = False
    reranker: bool = False
    context: int = 0

    @property
    def empty(self) -> bool:
        return not (self.inputs or self.outputs or self.tools or self.reranker or self.context)


@dataclass(frozen=True, slots=True)
class DirectUpstream:
    """Switchyard extension (`models.<id>.upstream`): serve a model from a remote HTTP(S) API, no process."""

    url: str  # base URL, e.g. https://api.anthropic.com or https://openrouter.ai/api/v1
    api_key: str = ""  # injected as Authorization: Bearer and x-api-key when set
    pass_auth: bool = False  # forward the client's Authorization / x-api-key unchanged
    insecure: bool = False  # skip TLS certificate verification (self-signed test servers)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    id: str
    cmd: str = ""
    cmd_stop: str = ""
    proxy: str = ""
    aliases: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    check_endpoint: str = "/health"
    ttl: int = 0  # seconds idle before unload; 0 = never (globalTTL already applied)
    unload_timeout: float = 10
    unlisted: bool = False
    use_model_name: str = ""
    name: str = ""
    description: str = ""
    concurrency_limit: int = DEFAULT_CONCURRENCY_LIMIT
    filters: Filters = field(default_factory=Filters)
    metadata: dict[str, Any] = field(default_factory=dict)
    send_loading_state: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)
    capabilities: Capabilities = field(default_factory=Capabilities)
    health_check_timeout: float = 120
    ignore_websockets: bool = False
    #: a remote API instead of a local process (Switchyard extension)
    upstream: DirectUpstream | None = None
    #: the resolved YAML of this model (macros expanded), for display
    source: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def args(self) -> list[str]:
        return split_command(self.cmd)

    @property
    def stop_args(self) -> list[str]:
        return split_command(self.cmd_stop) if self.cmd_stop.strip() else []

    @property
    def environment(self) -> dict[str, str]:
        out = {}
        for entry in self.env:
            name, _, value = entry.partition("=")
            out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class PeerConfig:
    id: str
    proxy: str
    models: tuple[str, ...]
    api_key: str = ""
    filters: Filters = field(default_factory=Filters)
    timeouts: Timeouts = field(default_factory=lambda: Timeouts(response_header=60))
    pass_auth: bool = False  # Switchyard extension: forward the client's own Authorization / x-api-key
    insecure: bool = False  # Switchyard extension: skip TLS verification


@dataclass(frozen=True, slots=True)
class GroupConfig:
    id: str
    members: tuple[str, ...]
    swap: bool = True
    exclusive: bool = True
    persistent: bool = False


@dataclass(frozen=True, slots=True)
class MatrixConfig:
    vars: dict[str, str] = field(default_factory=dict)
    evict_costs: dict[str, float] = field(default_factory=dict)
    sets: dict[str, str] = field(default_factory=dict)  # name → DSL expression, definition order kept


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    id: str
    description: str = ""
    pins: dict[str, str] = field(default_factory=dict)  # "" disables the id


@dataclass(frozen=True, slots=True)
class SelectorConfig:
    id: str
    strategy: Literal["warm", "pin", "spillover"]
    targets: tuple[str, ...]
    spillover: int = 1
    name: str = ""
    description: str = ""
    unlisted: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LibraryConfig:
    """Switchyard extension (top-level `library:`): serve GGUF files found on disk without a config entry each.

    Files in `paths` that no `models:` entry serves become models started with `llama_server` (see
    core.library_models). `max_loaded` caps how many local models are loaded at once (0: no cap), evicting the
    least recently used; `idle_minutes` stops a library model after that long without requests (0: never).
    """

    paths: tuple[str, ...] = ()
    llama_server: str = "llama-server"
    max_loaded: int = 1
    idle_minutes: float = 0


@dataclass(frozen=True, slots=True)
class Config:
    models: dict[str, ModelConfig] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # alias → model id
    peers: dict[str, PeerConfig] = field(default_factory=dict)
    groups: dict[str, GroupConfig] = field(default_factory=dict)
    matrix: MatrixConfig | None = None
    router: Literal["group", "matrix"] = "group"
    priority: dict[str, int] = field(default_factory=dict)
    preload: tuple[str, ...] = ()
    startup_profile: str = ""
    profiles: dict[str, ProfileConfig] = field(default_factory=dict)
    selectors: dict[str, SelectorConfig] = field(default_factory=dict)
    api_keys: tuple[str, ...] = ()
    health_check_timeout: float = 120
    global_ttl: int = 0
    unload_timeout: float = 10
    start_port: int = 5800
    log_level: str = "info"
    log_to_stdout: str = "proxy"
    send_loading_state: bool = False
    include_aliases_in_list: bool = False
    session_id_headers: tuple[str, ...] = ("X-Session-ID", "X-Litellm-Session-Id")
    upstream_ignore_paths: tuple[re.Pattern[str], ...] = ()
    #: the `library:` extension (None when the key is absent)
    library: LibraryConfig | None = None
    #: ids of `models` generated from the library at run time (merged in by core.library_models)
    library_models: frozenset[str] = frozenset()
    warnings: tuple[ConfigProblem, ...] = ()
    #: macro-expanded tree, for config snippets
    resolved: dict[str, Any] = field(default_factory=dict, compare=False)

    def real_model_id(self, name: str) -> str | None:
        """A local model id for `name` (an id or an alias), or None."""
        if name in self.models:
            return name
        return self.aliases.get(name)

    def resolve_peer_model(self, name: str) -> tuple[str, str] | None:
        """(peer id, model id) for a fully qualified `peer/model`, or for an id exactly one peer serves."""
        for qualified in (True, False):
            found: tuple[str, str] | None = None
            for peer in self.peers.values():
                for model in peer.models:
                    candidate = f"{peer.id}/{model}" if qualified else model
                    if candidate != name:
                        continue
                    if found and found != (peer.id, model):
                        return None
                    found = (peer.id, model)
            if found:
                return found
        return None

    def model_ids(self) -> list[str]:
        return sorted(self.models)


def split_command(command: str) -> list[str]:
    """Split a `cmd` string as llama-swap does: drop `#` lines, join `\\` continuations, POSIX shell words."""
    lines = []
    for line in command.split("\n"):
        trimmed = line.strip()
        if trimmed.startswith("#"):
            continue
        lines.append(trimmed[:-1] + " " if trimmed.endswith("\\") else line)
    return shlex.split("\n".join(lines), posix=True)
