"""Settings from environment variables, with a `.env` file honoured.

Every setting is listed once here and documented in README's configuration table.
A variable already set in the environment wins over the same name in `.env`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse KEY=VALUE lines (optional `export`, quotes, `#` comments)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        name, sep, value = line.partition("=")
        if not sep:
            continue
        name, value = name.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
            if raw.strip().partition("=")[2].strip().startswith('"'):
                value = value.encode().decode("unicode_escape")
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[name] = value
    return values


def load_dotenv(path: Path | None = None) -> None:
    """Copy `.env` entries into os.environ without overriding what is already set."""
    for name, value in read_dotenv(path or Path(os.environ.get("SWITCHYARD_ENV_FILE", ".env"))).items():
        os.environ.setdefault(name, value)


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    config_path: Path = field(default_factory=lambda: Path(_env("SWITCHYARD_CONFIG", "config/config.yaml")))
    database_url: str = field(
        default_factory=lambda: _env("SWITCHYARD_DATABASE_URL", "sqlite+aiosqlite:///data/switchyard.db")
    )
    host: str = field(default_factory=lambda: _env("SWITCHYARD_HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: int(_env("SWITCHYARD_PORT", "3000")))
    workers: int = field(default_factory=lambda: int(_env("SWITCHYARD_WORKERS", "1")))
    log_level: str = field(default_factory=lambda: _env("SWITCHYARD_LOG_LEVEL", "info").lower())
    upstream_header_timeout: float = field(
        default_factory=lambda: float(_env("SWITCHYARD_UPSTREAM_HEADER_TIMEOUT", "600"))
    )
    max_body_bytes: int = field(default_factory=lambda: int(_env("SWITCHYARD_MAX_BODY_BYTES", str(64 * 1024 * 1024))))
    log_queue_size: int = field(default_factory=lambda: int(_env("SWITCHYARD_LOG_QUEUE_SIZE", "10000")))
    starvation_bound: float = field(default_factory=lambda: float(_env("SWITCHYARD_STARVATION_BOUND", "10")))
    dashboard: bool = field(default_factory=lambda: _bool(_env("SWITCHYARD_DASHBOARD", "true")))
    pricing_path: str = field(default_factory=lambda: _env("SWITCHYARD_PRICING_PATH", ""))
    watch_config: bool = field(default_factory=lambda: _bool(_env("SWITCHYARD_WATCH_CONFIG", "true")))
    #: the credential vault's key material (>= 32 characters); without it no credential can be stored or used
    secret_key: str = field(default_factory=lambda: _env("SWITCHYARD_SECRET_KEY", ""), repr=False)
    # admin API and sign-in (issue 6)
    admin_token: str = field(default_factory=lambda: _env("SWITCHYARD_ADMIN_TOKEN", ""), repr=False)
    public_url: str = field(default_factory=lambda: _env("SWITCHYARD_PUBLIC_URL", ""))
    rp_id: str = field(default_factory=lambda: _env("SWITCHYARD_RP_ID", ""))
    origin: str = field(default_factory=lambda: _env("SWITCHYARD_ORIGIN", ""))
    session_hours: float = field(default_factory=lambda: float(_env("SWITCHYARD_SESSION_HOURS", "168")))
    gpu_poll_seconds: float = field(default_factory=lambda: float(_env("SWITCHYARD_GPU_POLL_SECONDS", "10")))
    #: the Ollama-compatible listener for clients that assume http://host:11434/api/... (0 disables it)
    ollama_port: int = field(default_factory=lambda: int(_env("SWITCHYARD_OLLAMA_PORT", "11434")))
    hf_base_url: str = field(default_factory=lambda: _env("SWITCHYARD_HF_BASE_URL", "https://huggingface.co"))
    hf_token: str = field(default_factory=lambda: _env("SWITCHYARD_HF_TOKEN", ""))
    download_speed_limit: int = field(default_factory=lambda: int(_env("SWITCHYARD_DOWNLOAD_SPEED_LIMIT", "0")))
    #: let /api/article fetch loopback, private and link-local addresses (tests, pages on your own LAN)
    article_allow_private: bool = field(
        default_factory=lambda: _bool(_env("SWITCHYARD_ARTICLE_ALLOW_PRIVATE", "false"))
    )

    @classmethod
    def from_env(cls) -> Settings:
        load_dotenv()
        return cls()

    def as_env(self) -> dict[str, str]:
        """The settings as environment variables, for worker processes."""
        names = {
            "config_path": "SWITCHYARD_CONFIG",
            "database_url": "SWITCHYARD_DATABASE_URL",
            "host": "SWITCHYARD_HOST",
            "port": "SWITCHYARD_PORT",
            "workers": "SWITCHYARD_WORKERS",
            "log_level": "SWITCHYARD_LOG_LEVEL",
            "upstream_header_timeout": "SWITCHYARD_UPSTREAM_HEADER_TIMEOUT",
            "max_body_bytes": "SWITCHYARD_MAX_BODY_BYTES",
            "log_queue_size": "SWITCHYARD_LOG_QUEUE_SIZE",
            "starvation_bound": "SWITCHYARD_STARVATION_BOUND",
            "watch_config": "SWITCHYARD_WATCH_CONFIG",
            "pricing_path": "SWITCHYARD_PRICING_PATH",
            "dashboard": "SWITCHYARD_DASHBOARD",
            "secret_key": "SWITCHYARD_SECRET_KEY",
            "admin_token": "SWITCHYARD_ADMIN_TOKEN",
            "public_url": "SWITCHYARD_PUBLIC_URL",
            "rp_id": "SWITCHYARD_RP_ID",
            "origin": "SWITCHYARD_ORIGIN",
            "session_hours": "SWITCHYARD_SESSION_HOURS",
            "gpu_poll_seconds": "SWITCHYARD_GPU_POLL_SECONDS",
            "ollama_port": "SWITCHYARD_OLLAMA_PORT",
            "hf_base_url": "SWITCHYARD_HF_BASE_URL",
            "hf_token": "SWITCHYARD_HF_TOKEN",
            "download_speed_limit": "SWITCHYARD_DOWNLOAD_SPEED_LIMIT",
            "article_allow_private": "SWITCHYARD_ARTICLE_ALLOW_PRIVATE",
        }
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[names[f.name]] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return out
