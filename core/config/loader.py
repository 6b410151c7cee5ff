"""Load and validate a llama-swap compatible `config.yaml`.

Every problem is collected with its YAML key path and line/column; errors make
the load fail with :class:`ConfigError`, warnings (unknown keys, references to
ids that are not defined) are kept on :attr:`Config.warnings`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path as FilePath
from typing import Any

from core.config.macros import MacroError, expand_config, substitute_env
from core.config.schema import (
    DEFAULT_CONCURRENCY_LIMIT,
    DEFAULT_GROUP_ID,
    DEFAULT_UPSTREAM_IGNORE_PATHS,
    PROTECTED_PARAMS,
    Capabilities,
    Config,
    ConfigError,
    ConfigProblem,
    DirectUpstream,
    Filters,
    GroupConfig,
    LibraryConfig,
    MatrixConfig,
    ModelConfig,
    PeerConfig,
    ProfileConfig,
    SelectorConfig,
    Timeouts,
    split_command,
)
from core.config.source import Path, Position, YamlSyntaxError, format_path, parse_yaml, position_of
from core.swap.matrix import check_matrix

TOP_LEVEL_KEYS = {
    "healthCheckTimeout", "logLevel", "logTimeFormat", "logToStdout", "logRequests", "store",
    "metricsMaxInMemory", "captureBuffer", "ui", "performance", "startPort", "sendLoadingState",
    "includeAliasesInList", "globalTTL", "unloadTimeout", "macros", "apiKeys", "upstream", "profiles",
    "selectors", "models", "hooks", "routing", "groups", "matrix", "peers",
    "library",  # Switchyard extension: GGUF files served without a config entry each
}  # fmt: skip
MODEL_KEYS = {
    "macros", "cmd", "cmdStop", "proxy", "name", "description", "env", "checkEndpoint", "ttl", "unloadTimeout",
    "compat", "useModelName", "filters", "aliases", "metadata", "concurrencyLimit", "sendLoadingState",
    "timeouts", "capabilities", "unlisted",
    "upstream",  # Switchyard extension: a remote API instead of a process
}  # fmt: skip
FILTER_KEYS = {"stripParams", "strip_params", "setParams", "setParamsByID"}
TIMEOUT_KEYS = {"connect", "keepalive", "responseHeader", "tlsHandshake", "idleConn", "expectContinue", "body"}
PEER_KEYS = {"proxy", "apiKey", "models", "filters", "timeouts", "passAuth", "insecure"}
UPSTREAM_KEYS = {"url", "apiKey", "passAuth", "insecure"}
LIBRARY_KEYS = {"paths", "llamaServer", "maxLoaded", "idleMinutes"}
GROUP_KEYS = {"swap", "exclusive", "persistent", "members"}
MODALITIES = {"text", "audio", "image"}
LOG_TO_STDOUT = {"proxy", "upstream", "both", "none"}
LOG_LEVELS = {"debug", "info", "warn", "error"}

_MISSING = object()


class _Reader:
    """Typed access to the resolved tree that records problems instead of raising."""

    def __init__(self, positions: dict[Path, Position]):
        self.positions = positions
        self.problems: list[ConfigProblem] = []

    def report(self, path: Path, message: str, severity: str = "error") -> None:
        self.problems.append(ConfigProblem(format_path(path), message, position_of(self.positions, path), severity))  # type: ignore[arg-type]

    def warn(self, path: Path, message: str) -> None:
        self.report(path, message, "warning")

    def mapping(self, value: Any, path: Path, known: set[str] | None = None) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.report(path, f"must be a mapping, got {_type_name(value)}")
            return {}
        if known is not None:
            for key in value:
                if key not in known:
                    self.warn(path + (key,), "unknown key (ignored)")
        return {str(k): v for k, v in value.items()}

    def get(self, mapping: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any, path: Path) -> Any:
        value = mapping.get(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, bool) and bool not in kinds:
            return self._wrong(path + (key,), kinds, value, default)
        if not isinstance(value, kinds):
            return self._wrong(path + (key,), kinds, value, default)
        return value

    def _wrong(self, path: Path, kinds: tuple[type, ...], value: Any, default: Any) -> Any:
        expected = " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)
        self.report(path, f"must be {expected}, got {_type_name(value)} {value!r}")
        return default

    def string_list(self, mapping: dict[str, Any], key: str, path: Path) -> list[str]:
        value = mapping.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.report(path + (key,), f"must be a list of strings, got {_type_name(value)}")
            return []
        out = []
        for index, item in enumerate(value):
            if isinstance(item, (str, int, float)) and not isinstance(item, bool):
                out.append(str(item))
            else:
                self.report(path + (key, index), f"must be a string, got {_type_name(item)}")
        return out


_KIND_NAMES = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    str: "a string",
    dict: "a mapping",
    list: "a list",
}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "bool", int: "integer", float: "number", str: "string", dict: "mapping", list: "list"}.get(
        type(value), type(value).__name__
    )


def load_config(path: str | FilePath) -> Config:
    text = FilePath(path).read_text(encoding="utf-8")
    return load_config_text(text)


def check_config_text(text: str) -> tuple[Config | None, list[ConfigProblem]]:
    """Validate without raising: (config or None, every error and warning)."""
    try:
        config = load_config_text(text)
    except ConfigError as exc:
        return None, exc.problems
    return config, list(config.warnings)


def load_config_text(text: str) -> Config:
    try:
        _, positions = parse_yaml(text)
        expanded_text = substitute_env(text)
        data, positions = parse_yaml(expanded_text)
    except YamlSyntaxError as exc:
        raise ConfigError([ConfigProblem("(yaml)", str(exc), exc.position)]) from None
    except MacroError as exc:
        raise ConfigError([ConfigProblem(format_path(exc.path), str(exc), exc.position)]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem("(root)", "the config must be a YAML mapping", Position(1, 1))])
    data = {str(k): v for k, v in data.items()}
    try:
        resolved, macro_warnings = expand_config(data)
    except MacroError as exc:
        raise ConfigError(
            [ConfigProblem(format_path(exc.path), str(exc), exc.position or position_of(positions, exc.path))]
        ) from None
    reader = _Reader(positions)
    for warning in macro_warnings:
        reader.warn(warning.path, str(warning))
    config = _build(resolved, reader)
    errors = [p for p in reader.problems if p.severity == "error"]
    if errors:
        raise ConfigError(errors)
    return config


def _build(raw: dict[str, Any], r: _Reader) -> Config:
    top = r.mapping(raw, (), TOP_LEVEL_KEYS)

    health_check_timeout = max(15, r.get(top, "healthCheckTimeout", int, 120, ()))
    global_ttl = r.get(top, "globalTTL", int, 0, ())
    if global_ttl < 0:
        r.report(("globalTTL",), "must be >= 0")
    unload_timeout = r.get(top, "unloadTimeout", (int, float), 10, ())
    if unload_timeout < 0:
        r.report(("unloadTimeout",), "must be >= 0")
    unload_timeout = unload_timeout or 10
    log_level = r.get(top, "logLevel", str, "info", ())
    if log_level not in LOG_LEVELS:
        r.report(("logLevel",), f"must be one of {', '.join(sorted(LOG_LEVELS))}")
    log_to_stdout = r.get(top, "logToStdout", str, "proxy", ())
    if log_to_stdout not in LOG_TO_STDOUT:
        r.report(("logToStdout",), "must be one of: proxy, upstream, both, none")
    send_loading_state = r.get(top, "sendLoadingState", bool, False, ())

    models: dict[str, ModelConfig] = {}
    models_raw = r.mapping(top.get("models"), ("models",))
    for model_id in sorted(models_raw):
        model = _build_model(
            model_id, models_raw[model_id], r,
            health_check_timeout=health_check_timeout, global_ttl=global_ttl,
            unload_timeout=unload_timeout, send_loading_state=send_loading_state,
        )  # fmt: skip
        if model is not None:
            models[model_id] = model

    aliases = _build_aliases(models, r)
    peers = _build_peers(top.get("peers"), r)
    _validate_peer_namespace(peers, models, aliases, r)

    router, groups, matrix = _build_routing(top, models, r)

    ui = r.mapping(top.get("ui"), ("ui",))
    activity = r.mapping(ui.get("activity"), ("ui", "activity"))
    session_headers = _unique_ci(r.string_list(activity, "session_id", ("ui", "activity")))
    if "session_id" not in activity:
        session_headers = ["X-Session-ID", "X-Litellm-Session-Id"]

    upstream = r.mapping(top.get("upstream"), ("upstream",), {"ignorePaths"})
    ignore_paths = []
    for index, pattern in enumerate(r.string_list(upstream, "ignorePaths", ("upstream",))):
        try:
            ignore_paths.append(re.compile(pattern))
        except re.error as exc:
            r.report(("upstream", "ignorePaths", index), f"invalid regular expression: {exc}")
    if not ignore_paths:
        ignore_paths = [re.compile(p) for p in DEFAULT_UPSTREAM_IGNORE_PATHS]

    api_keys = []
    for index, key in enumerate(r.string_list(top, "apiKeys", ())):
        if not key:
            r.report(("apiKeys", index), "empty api key")
        elif " " in key:
            r.report(("apiKeys", index), "api key cannot contain spaces")
        else:
            api_keys.append(key)

    def resolves(name: str) -> bool:
        return name in models or name in aliases or _peer_lookup(peers, name) is not None

    selectors = _build_selectors(top.get("selectors"), models, aliases, resolves, r)
    profiles = _build_profiles(top.get("profiles"), resolves, selectors, r)

    hooks = r.mapping(top.get("hooks"), ("hooks",), {"on_startup"})
    on_startup = r.mapping(hooks.get("on_startup"), ("hooks", "on_startup"), {"preload", "profile"})
    preload = []
    for index, name in enumerate(r.string_list(on_startup, "preload", ("hooks", "on_startup"))):
        name = name.strip()
        if not name:
            continue
        real = name if name in models else aliases.get(name)
        if real is None:
            r.warn(("hooks", "on_startup", "preload", index), f"unknown model {name!r} is not preloaded")
        else:
            preload.append(real)
    startup_profile = r.get(on_startup, "profile", str, "", ("hooks", "on_startup"))
    if startup_profile and startup_profile not in profiles:
        r.report(("hooks", "on_startup", "profile"), f"unknown profile {startup_profile!r}")

    priority = _build_priority(top, models, aliases, r)
    library = _build_library(top.get("library"), r) if "library" in top else None

    return Config(
        models=models,
        aliases=aliases,
        peers=peers,
        groups=groups,
        matrix=matrix,
        router=router,
        priority=priority,
        preload=tuple(preload),
        startup_profile=startup_profile,
        profiles=profiles,
        selectors=selectors,
        api_keys=tuple(api_keys),
        health_check_timeout=health_check_timeout,
        global_ttl=global_ttl,
        unload_timeout=unload_timeout,
        start_port=r.get(top, "startPort", int, 5800, ()),
        log_level=log_level,
        log_to_stdout=log_to_stdout,
        send_loading_state=send_loading_state,
        include_aliases_in_list=r.get(top, "includeAliasesInList", bool, False, ()),
        session_id_headers=tuple(session_headers),
        upstream_ignore_paths=tuple(ignore_paths),
        library=library,
        warnings=tuple(p for p in r.problems if p.severity == "warning"),
        resolved=raw,
    )


def _build_model(
    model_id: str, raw: Any, r: _Reader, *, health_check_timeout: float, global_ttl: int,
    unload_timeout: float, send_loading_state: bool,
) -> ModelConfig | None:  # fmt: skip
    path: Path = ("models", model_id)
    if not model_id.strip():
        r.report(path, "model ids cannot be empty")
    m = r.mapping(raw, path, MODEL_KEYS)
    if not isinstance(raw, dict):
        return None
    upstream = _build_direct_upstream(m.get("upstream"), path + ("upstream",), r)
    cmd = r.get(m, "cmd", str, "", path)
    if upstream is not None:
        if cmd.strip():
            r.report(
                path + ("upstream",), "a model has either cmd (a local server) or upstream (a remote API), not both"
            )
    elif not cmd.strip():
        r.report(path + ("cmd",), "is required (or upstream: for a remote API)")
    else:
        try:
            if not split_command(cmd):
                r.report(path + ("cmd",), "empty command")
        except ValueError as exc:
            r.report(path + ("cmd",), f"cannot be split into arguments: {exc}")
    cmd_stop = r.get(m, "cmdStop", str, "", path)
    if cmd_stop.strip():
        try:
            split_command(cmd_stop)
        except ValueError as exc:
            r.report(path + ("cmdStop",), f"cannot be split into arguments: {exc}")
    proxy = r.get(m, "proxy", str, "", path)
    if upstream is not None:
        proxy = upstream.url
    elif isinstance(m.get("proxy", ""), str) and not re.match(r"^https?://[^/\s]+", proxy):  # a non-string is reported
        r.report(path + ("proxy",), f"invalid proxy URL {proxy!r}")
    ttl = r.get(m, "ttl", int, -1, path)
    if ttl == -1:
        ttl = global_ttl
    if ttl < 0:
        r.report(path + ("ttl",), f"invalid TTL value {ttl}")
    model_unload = r.get(m, "unloadTimeout", (int, float), 0, path)
    if model_unload < 0:
        r.report(path + ("unloadTimeout",), f"invalid unloadTimeout value {model_unload}")
    concurrency = r.get(m, "concurrencyLimit", int, 0, path)
    if concurrency < 0:
        r.report(path + ("concurrencyLimit",), "must be >= 0")
    env = r.string_list(m, "env", path)
    for index, entry in enumerate(env):
        if "=" not in entry or entry.startswith("="):
            r.report(path + ("env", index), f"must look like NAME=value, got {entry!r}")
    check_endpoint = r.get(m, "checkEndpoint", str, "/health", path)
    if check_endpoint != "none" and not check_endpoint.startswith("/"):
        r.report(path + ("checkEndpoint",), "must be a path starting with '/' or 'none'")
    metadata = m.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        r.report(path + ("metadata",), "must be a mapping")
        metadata = None
    compat = r.mapping(m.get("compat"), path + ("compat",), {"ignoreWebsockets"})
    sls = m.get("sendLoadingState")
    if sls is not None and not isinstance(sls, bool):
        r.report(path + ("sendLoadingState",), "must be true or false")
        sls = None
    return ModelConfig(
        id=model_id,
        cmd=cmd,
        cmd_stop=cmd_stop,
        proxy=proxy.rstrip("/"),
        aliases=tuple(r.string_list(m, "aliases", path)),
        env=tuple(env),
        check_endpoint=check_endpoint,
        ttl=max(ttl, 0),
        unload_timeout=model_unload or unload_timeout,
        unlisted=r.get(m, "unlisted", bool, False, path),
        use_model_name=r.get(m, "useModelName", str, "", path),
        name=r.get(m, "name", str, "", path),
        description=r.get(m, "description", str, "", path),
        concurrency_limit=concurrency or DEFAULT_CONCURRENCY_LIMIT,
        filters=_build_filters(m.get("filters"), path + ("filters",), r, allow_by_id=True),
        metadata={str(k): v for k, v in (metadata or {}).items()},
        send_loading_state=send_loading_state if sls is None else sls,
        timeouts=_build_timeouts(m.get("timeouts"), path + ("timeouts",), r, Timeouts()),
        capabilities=_build_capabilities(m.get("capabilities"), path + ("capabilities",), r),
        health_check_timeout=health_check_timeout,
        ignore_websockets=r.get(compat, "ignoreWebsockets", bool, False, path + ("compat",)),
        upstream=upstream,
        source=raw,
    )


def _build_library(raw: Any, r: _Reader) -> LibraryConfig:
    path: Path = ("library",)
    lib = r.mapping(raw, path, LIBRARY_KEYS)
    paths = [p for p in r.string_list(lib, "paths", path) if p.strip()]
    llama_server = r.get(lib, "llamaServer", str, "llama-server", path).strip()
    if not llama_server:
        r.report(path + ("llamaServer",), "must name the llama-server binary")
    max_loaded = r.get(lib, "maxLoaded", int, 1, path)
    if max_loaded < 0:
        r.report(path + ("maxLoaded",), "must be >= 0 (0: no limit)")
    idle_minutes = r.get(lib, "idleMinutes", (int, float), 0, path)
    if idle_minutes < 0:
        r.report(path + ("idleMinutes",), "must be >= 0 (0: never)")
    return LibraryConfig(
        paths=tuple(paths),
        llama_server=llama_server or "llama-server",
        max_loaded=max(max_loaded, 0),
        idle_minutes=max(idle_minutes, 0),
    )


def _build_direct_upstream(raw: Any, path: Path, r: _Reader) -> DirectUpstream | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = {"url": raw}
    u = r.mapping(raw, path, UPSTREAM_KEYS)
    url = r.get(u, "url", str, "", path).rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        r.report(path + ("url",), f"must be an http(s) base URL, got {url!r}")
    return DirectUpstream(
        url=url,
        api_key=r.get(u, "apiKey", str, "", path),
        pass_auth=r.get(u, "passAuth", bool, False, path),
        insecure=r.get(u, "insecure", bool, False, path),
    )


def _build_filters(raw: Any, path: Path, r: _Reader, *, allow_by_id: bool) -> Filters:
    known = FILTER_KEYS if allow_by_id else {"stripParams", "setParams"}
    f = r.mapping(raw, path, known)
    strip = r.get(f, "stripParams", str, "", path) or r.get(f, "strip_params", str, "", path)
    params = sorted({p.strip() for p in strip.split(",") if p.strip() and p.strip() not in PROTECTED_PARAMS})
    set_params = {k: v for k, v in r.mapping(f.get("setParams"), path + ("setParams",)).items()}
    for key in PROTECTED_PARAMS & set_params.keys():
        r.warn(path + ("setParams", key), f"'{key}' is protected and cannot be set")
        del set_params[key]
    by_id: dict[str, dict[str, Any]] = {}
    if allow_by_id:
        for key, value in r.mapping(f.get("setParamsByID"), path + ("setParamsByID",)).items():
            values = r.mapping(value, path + ("setParamsByID", key))
            by_id[key] = {k: v for k, v in values.items() if k not in PROTECTED_PARAMS}
    return Filters(strip_params=tuple(params), set_params=set_params, set_params_by_id=by_id)


def _build_timeouts(raw: Any, path: Path, r: _Reader, defaults: Timeouts) -> Timeouts:
    t = r.mapping(raw, path, TIMEOUT_KEYS)
    values = {}
    for key, attr in (("connect", "connect"), ("keepalive", "keepalive"), ("responseHeader", "response_header"),
                      ("tlsHandshake", "tls_handshake"), ("idleConn", "idle_conn"), ("body", "body")):  # fmt: skip
        value = r.get(t, key, (int, float), getattr(defaults, attr), path)
        if value < 0:
            r.report(path + (key,), "must be >= 0")
        values[attr] = value
    return Timeouts(**values)


def _build_capabilities(raw: Any, path: Path, r: _Reader) -> Capabilities:
    c = r.mapping(raw, path, {"in", "out", "tools", "reranker", "context"})
    inputs = r.string_list(c, "in", path)
    outputs = r.string_list(c, "out", path)
    for key, values in (("in", inputs), ("out", outputs)):
        for index, value in enumerate(values):
            if value not in MODALITIES:
                r.report(path + (key, index), f"invalid modality {value!r}, must be one of: text, audio, image")
    context = r.get(c, "context", int, 0, path)
    if context < 0:
        r.report(path + ("context",), "must be >= 0")
    return Capabilities(
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        tools=r.get(c, "tools", bool, False, path),
        reranker=r.get(c, "reranker", bool, False, path),
        context=context,
    )


def _build_aliases(models: dict[str, ModelConfig], r: _Reader) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for model_id, model in models.items():
        for index, alias in enumerate(model.aliases):
            if alias in aliases:
                r.report(
                    ("models", model_id, "aliases", index),
                    f"duplicate alias {alias!r}, already used by model {aliases[alias]}",
                )
            elif alias in models:
                r.report(("models", model_id, "aliases", index), f"alias {alias!r} conflicts with a model id")
            else:
                aliases[alias] = model_id
    # setParamsByID keys become aliases of their model
    for model_id, model in models.items():
        extra = []
        for key in model.filters.set_params_by_id:
            if key == model_id:
                continue
            where = ("models", model_id, "filters", "setParamsByID", key)
            if key in models:
                r.report(where, f"key {key!r} conflicts with an existing model id")
            elif key in aliases and aliases[key] != model_id:
                r.report(where, f"duplicate alias {key!r}, already used by model {aliases[key]}")
            elif key not in aliases:
                aliases[key] = model_id
                extra.append(key)
        if extra:
            object.__setattr__(model, "aliases", model.aliases + tuple(extra))
    return aliases


def _build_peers(raw: Any, r: _Reader) -> dict[str, PeerConfig]:
    peers = {}
    for peer_id, value in r.mapping(raw, ("peers",)).items():
        path: Path = ("peers", peer_id)
        p = r.mapping(value, path, PEER_KEYS)
        proxy = r.get(p, "proxy", str, "", path)
        if not proxy:
            r.report(path + ("proxy",), "is required")
        elif not re.match(r"^https?://[^/\s]+", proxy):
            r.report(path + ("proxy",), f"invalid peer proxy URL {proxy!r}")
        models = list(dict.fromkeys(r.string_list(p, "models", path)))
        if not models:
            r.report(path + ("models",), "peer models can not be empty")
        peers[peer_id] = PeerConfig(
            id=peer_id,
            proxy=proxy.rstrip("/"),
            models=tuple(models),
            api_key=r.get(p, "apiKey", str, "", path),
            filters=_build_filters(p.get("filters"), path + ("filters",), r, allow_by_id=False),
            timeouts=_build_timeouts(p.get("timeouts"), path + ("timeouts",), r, Timeouts(response_header=60)),
            pass_auth=r.get(p, "passAuth", bool, False, path),
            insecure=r.get(p, "insecure", bool, False, path),
        )
    return peers


def _peer_lookup(peers: dict[str, PeerConfig], name: str) -> tuple[str, str] | None:
    return Config(peers=peers).resolve_peer_model(name)


def _validate_peer_namespace(
    peers: dict[str, PeerConfig], models: dict[str, ModelConfig], aliases: dict[str, str], r: _Reader
) -> None:
    owners: dict[str, tuple[str, str]] = {}
    for peer_id in sorted(peers):
        for model in peers[peer_id].models:
            fqn = f"{peer_id}/{model}"
            if fqn in owners:
                r.report(
                    ("peers", peer_id, "models"), f"peer model name {fqn!r} is ambiguous with peers.{owners[fqn][0]}"
                )
            owners[fqn] = (peer_id, model)
            if fqn in models:
                r.report(("models", fqn), f"model id {fqn!r} conflicts with a fully qualified peer model name")
            if fqn in aliases:
                r.report(
                    ("models", aliases[fqn], "aliases"),
                    f"alias {fqn!r} conflicts with a fully qualified peer model name",
                )


def _build_routing(
    top: dict[str, Any], models: dict[str, ModelConfig], r: _Reader
) -> tuple[str, dict[str, GroupConfig], MatrixConfig | None]:
    routing = r.mapping(top.get("routing"), ("routing",), {"router", "scheduler"})
    router_raw = r.mapping(routing.get("router"), ("routing", "router"), {"use", "settings"})
    settings = r.mapping(router_raw.get("settings"), ("routing", "router", "settings"), {"groups", "matrix"})
    has_legacy = top.get("matrix") is not None or bool(top.get("groups"))
    has_routing = bool(router_raw.get("use")) or settings.get("matrix") is not None or bool(settings.get("groups"))
    if has_legacy and has_routing:
        r.report(
            ("routing",),
            "the legacy top-level 'matrix'/'groups' keys and 'routing.router' cannot be used together; "
            "move the top-level keys into routing.router.settings",
        )
    use = r.get(router_raw, "use", str, "", ("routing", "router"))
    if has_legacy:
        groups_raw, matrix_raw = top.get("groups"), top.get("matrix")
        groups_path: Path = ("groups",)
        matrix_path: Path = ("matrix",)
        if groups_raw and matrix_raw is not None:
            r.report(("matrix",), "config cannot use both 'groups' and 'matrix'")
        use = "matrix" if matrix_raw is not None else "group"
    else:
        groups_raw, matrix_raw = settings.get("groups"), settings.get("matrix")
        groups_path = ("routing", "router", "settings", "groups")
        matrix_path = ("routing", "router", "settings", "matrix")
        use = use or "group"
        if use not in ("group", "matrix"):
            r.report(("routing", "router", "use"), f"unknown router {use!r} (valid: group, matrix)")
            use = "group"
        if use == "matrix" and matrix_raw is None:
            r.report(("routing", "router", "use"), "is 'matrix' but routing.router.settings.matrix is not set")

    scheduler = r.mapping(routing.get("scheduler"), ("routing", "scheduler"), {"use", "settings"})
    scheduler_use = r.get(scheduler, "use", str, "fifo", ("routing", "scheduler"))
    if scheduler_use != "fifo":
        r.report(("routing", "scheduler", "use"), f"unknown scheduler {scheduler_use!r} (valid: fifo)")

    matrix = (
        _build_matrix(matrix_raw, matrix_path, models, r, active=use == "matrix") if matrix_raw is not None else None
    )
    groups: dict[str, GroupConfig] = {}
    if use == "group":
        groups = _build_groups(groups_raw, groups_path, models, r)
    return use, groups, matrix


def _build_groups(raw: Any, path: Path, models: dict[str, ModelConfig], r: _Reader) -> dict[str, GroupConfig]:
    groups: dict[str, GroupConfig] = {}
    owner: dict[str, str] = {}
    for group_id, value in r.mapping(raw, path).items():
        gpath = path + (group_id,)
        g = r.mapping(value, gpath, GROUP_KEYS)
        members = []
        for index, member in enumerate(r.string_list(g, "members", gpath)):
            where = gpath + ("members", index)
            if member in members:
                r.report(where, f"duplicate model member {member!r} in group {group_id}")
                continue
            if member in owner:
                r.report(where, f"model {member!r} is in more than one group: {owner[member]} and {group_id}")
                continue
            if member not in models:
                r.warn(where, f"group member {member!r} is not a model defined under models (ignored)")
                continue
            owner[member] = group_id
            members.append(member)
        groups[group_id] = GroupConfig(
            id=group_id,
            members=tuple(members),
            swap=r.get(g, "swap", bool, True, gpath),
            exclusive=r.get(g, "exclusive", bool, True, gpath),
            persistent=r.get(g, "persistent", bool, False, gpath),
        )
    orphans = tuple(sorted(m for m in models if m not in owner))
    if orphans or not groups:
        groups[DEFAULT_GROUP_ID] = GroupConfig(id=DEFAULT_GROUP_ID, members=orphans)
    return groups


MATRIX_VAR = re.compile(r"^[A-Za-z0-9.\-]{1,32}$")


def _build_matrix(raw: Any, path: Path, models: dict[str, ModelConfig], r: _Reader, *, active: bool) -> MatrixConfig:
    m = r.mapping(raw, path, {"vars", "evict_costs", "sets"})
    vars_: dict[str, str] = {}
    for name, target in r.mapping(m.get("vars"), path + ("vars",)).items():
        if not MATRIX_VAR.match(name):
            r.report(path + ("vars", name), "var names are 1-32 characters of letters, digits, '-' or '.'")
            continue
        if not isinstance(target, str):
            r.report(path + ("vars", name), "must be a model id")
            continue
        vars_[name] = target
    costs: dict[str, float] = {}
    for name, cost in r.mapping(m.get("evict_costs"), path + ("evict_costs",)).items():
        if not isinstance(cost, (int, float)) or isinstance(cost, bool) or cost < 0:
            r.report(path + ("evict_costs", name), "must be a number >= 0")
            continue
        costs[name] = cost
    sets: dict[str, str] = {}
    for name, expression in r.mapping(m.get("sets"), path + ("sets",)).items():
        if not isinstance(expression, str) or not expression.strip():
            r.report(path + ("sets", name), "must be a non-empty set expression")
            continue
        sets[name] = expression
    matrix = MatrixConfig(vars=vars_, evict_costs=costs, sets=sets)
    # Unknown models, refs, cycles and syntax errors; an inactive matrix (e.g. llama-swap's
    # example, which names models it does not define) only warns.
    _, problems = check_matrix(matrix, models, path=path)
    for problem in problems:
        r.report(problem.path, problem.message, "error" if active else "warning")
    return matrix


def _build_priority(
    top: dict[str, Any], models: dict[str, ModelConfig], aliases: dict[str, str], r: _Reader
) -> dict[str, int]:
    path: Path = ("routing", "scheduler", "settings", "fifo", "priority")
    routing = top.get("routing") if isinstance(top.get("routing"), dict) else {}
    raw = routing
    for key in path[1:]:
        raw = raw.get(key) if isinstance(raw, dict) else None
    out = {}
    for name, value in r.mapping(raw, path).items():
        if not isinstance(value, int) or isinstance(value, bool):
            r.report(path + (name,), "priority must be an integer")
            continue
        real = name if name in models else aliases.get(name)
        if real is None:
            r.warn(path + (name,), f"priority for unknown model {name!r} (ignored)")
            continue
        out[real] = value
    return out


def _build_selectors(
    raw: Any, models: dict[str, ModelConfig], aliases: dict[str, str], resolves: Callable[[str], bool], r: _Reader
) -> dict[str, SelectorConfig]:
    selectors_raw = r.mapping(raw, ("selectors",))
    out = {}
    for selector_id, value in selectors_raw.items():
        path: Path = ("selectors", selector_id)
        s = r.mapping(value, path, {"strategy", "targets", "settings", "name", "description", "unlisted", "metadata"})
        if selector_id in models or selector_id in aliases:
            r.report(path, f"selector id {selector_id!r} conflicts with a model id or alias")
            continue
        strategy = r.get(s, "strategy", str, "", path)
        if strategy not in ("warm", "pin", "spillover"):
            r.report(
                path + ("strategy",),
                "is required: one of warm, pin, spillover"
                if not strategy
                else f"unknown strategy {strategy!r} (valid: warm, pin, spillover)",
            )
            continue
        targets = []
        for index, target in enumerate(r.string_list(s, "targets", path)):
            where = path + ("targets", index)
            if target in selectors_raw:
                r.report(where, f"references selector {target!r}; selectors cannot target selectors")
            elif not resolves(target):
                r.warn(where, f"unknown model {target!r} (ignored)")
            elif strategy == "warm" and target not in models and target not in aliases:
                r.report(where, "a warm selector's targets must be local models")
            else:
                targets.append(target)
        if not targets:
            r.warn(path + ("targets",), "no usable targets; the selector is ignored")
            continue
        settings = r.mapping(s.get("settings"), path + ("settings",), {"spillover"})
        spill = r.get(settings, "spillover", int, 1, path + ("settings",))
        if spill < 1:
            r.report(path + ("settings", "spillover"), "must be >= 1")
        metadata = s.get("metadata") if isinstance(s.get("metadata"), dict) else {}
        out[selector_id] = SelectorConfig(
            id=selector_id,
            strategy=strategy,  # type: ignore[arg-type]
            targets=tuple(targets),
            spillover=max(spill, 1),
            name=r.get(s, "name", str, "", path),
            description=r.get(s, "description", str, "", path),
            unlisted=r.get(s, "unlisted", bool, False, path),
            metadata=metadata,
        )
    return out


def _build_profiles(
    raw: Any, resolves: Callable[[str], bool], selectors: dict[str, SelectorConfig], r: _Reader
) -> dict[str, ProfileConfig]:
    out = {}
    for profile_id, value in r.mapping(raw, ("profiles",)).items():
        path: Path = ("profiles", profile_id)
        if isinstance(value, list):
            r.report(path, "a profile is a mapping with description and pins; the legacy list syntax is not supported")
            continue
        p = r.mapping(value, path, {"description", "pins"})
        pins_raw = r.mapping(p.get("pins"), path + ("pins",))
        if not pins_raw:
            r.report(path + ("pins",), "must contain at least one entry")
        pins = {}
        for pin, target in pins_raw.items():
            target = "" if target is None else str(target)
            if target and not resolves(target) and target not in selectors:
                r.warn(path + ("pins", pin), f"references unknown model {target!r} (ignored)")
                continue
            pins[pin] = target
        out[profile_id] = ProfileConfig(id=profile_id, description=r.get(p, "description", str, "", path), pins=pins)
    return out


def _unique_ci(names: list[str]) -> list[str]:
    seen, out = set(), []
    for name in names:
        name = name.strip()
        if name and name.lower() not in seen:
            seen.add(name.lower())
            out.append(name)
    return out
