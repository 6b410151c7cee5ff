"""Runtime: the live objects one gateway process owns (config, swap engine, clients, log writer).

Created by :func:`api.app.create_app`, started and stopped by the Litestar lifespan.

`file_config` is config.yaml as loaded; `config` is what is served: the file's models plus the models the
model library generates (see api.library). Every change to either goes through :meth:`Runtime.apply_config`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import httpx

from api.db.engine import make_alchemy_config
from api.gateway.ollama_listener import OllamaListener
from api.library import LibraryService
from api.settings import Settings
from api.settings_store import RuntimeSettings, SettingsStore
from api.workers.request_log import RequestLogWriter
from core.config import Config, ConfigError, load_config
from core.config.schema import ProfileConfig, Timeouts
from core.pricing import PricingCatalog
from core.routing import Target
from core.events import EventBus
from core.logbook import LogBook
from core.selectors import SelectorRouter
from core.swap.engine import SwapEngine

log = logging.getLogger("switchyard")


def _timeout(t: Timeouts) -> httpx.Timeout:
    return httpx.Timeout(connect=t.connect or None, read=None, write=None, pool=None)


def _scheme_host(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return scheme + "://" + rest.split("/", 1)[0]


class Runtime:
    def __init__(self, settings: Settings, config: Config):
        self.settings = settings
        self.file_config = config
        self.config = config
        self.started_at = time.time()
        self.logs = LogBook()
        self.events = EventBus()
        self.engine = SwapEngine(
            config,
            logs=self.logs,
            events=self.events,
            starvation_bound=settings.starvation_bound,
            on_model_event=lambda model, state, data: self.library.on_model_state(model, state, data),
        )
        self.alchemy = make_alchemy_config(settings.database_url)
        self.request_log = RequestLogWriter(self.alchemy.get_engine(), max_queue=settings.log_queue_size)
        self.settings_store = SettingsStore(self.alchemy.get_engine())
        self.local_http = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=30, read=None, write=None, pool=None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=256, keepalive_expiry=30),
            trust_env=False,
        )
        self._remote_clients: dict[tuple[str, bool, Timeouts], httpx.AsyncClient] = {}
        self.pricing = PricingCatalog.load(settings.pricing_path or None)
        self.selectors = SelectorRouter(config)
        self.active_profile: str | None = config.startup_profile or None
        self._config_mtime: float | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._config_lock = asyncio.Lock()
        self.library = LibraryService(self)
        self.ollama_listener = OllamaListener(self)

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        return cls(settings, load_config(settings.config_path))

    @property
    def live(self) -> RuntimeSettings:
        """Admin-editable settings (retention, capture, require-auth, attribution)."""
        return self.settings_store.current

    async def start(self) -> None:
        await self.settings_store.load()
        await self.request_log.start()
        await self.engine.start()
        await self.library.start()
        await self.apply_config()
        await self.ollama_listener.start()
        self._config_mtime = _mtime(self.settings.config_path)
        if self.settings.watch_config:
            self._watch_task = asyncio.create_task(self._watch_config(), name="config-watcher")
        self.logs.ring("proxy").write(f"switchyard started with {len(self.config.models)} models")

    async def stop(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
        await self.ollama_listener.stop()
        await self.library.stop()
        await self.engine.shutdown()
        await self.request_log.close()
        await self.local_http.aclose()
        for client in self._remote_clients.values():
            await client.aclose()
        await self.alchemy.get_engine().dispose()

    @property
    def active_profile_config(self) -> ProfileConfig | None:
        return self.config.profiles.get(self.active_profile) if self.active_profile else None

    def set_profile(self, profile: str | None) -> None:
        if profile is not None and profile not in self.config.profiles:
            raise KeyError(profile)
        self.active_profile = profile
        self.events.publish("profile.changed", active=profile)

    def remote_client(self, target: Target) -> httpx.AsyncClient:
        """A pooled client per remote host, TLS verification setting and timeouts (peers, direct upstreams)."""
        key = (_scheme_host(target.base_url), target.insecure, target.timeouts)
        client = self._remote_clients.get(key)
        if client is None:
            client = self._remote_clients[key] = httpx.AsyncClient(
                timeout=_timeout(target.timeouts),
                verify=not target.insecure,
                trust_env=False,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            )
        return client

    def request_completed(self, record: dict[str, Any]) -> None:
        """Called by the gateway once per finished request; never blocks."""
        self.request_log.submit(record)
        self.events.publish(
            "request.completed",
            cost_usd=record.get("cost_usd"),
            model=record["model"],
            path=record["path"],
            status=record["status_code"],
            duration_ms=round(record["duration_ms"], 2),
            prompt_tokens=record["prompt_tokens"],
            completion_tokens=record["completion_tokens"],
        )

    # ----------------------------------------------------------- config reload

    async def apply_config(self, file_config: Config | None = None) -> None:
        """Serve `file_config` (default: the current one) merged with the library's models."""
        async with self._config_lock:
            if file_config is not None:
                self.file_config = file_config
            merged = await self.library.merged(self.file_config)
            await self.engine.reload(merged)
            self.config = merged
            self.selectors = SelectorRouter(merged)

    async def reload_config(self, config: Config) -> None:
        await self.apply_config(config)
        config = self.config
        self.active_profile = config.startup_profile or None  # llama-swap: a reload selects the startup profile
        self.events.publish("config.reloaded", models=len(config.models))
        self.logs.ring("proxy").write("config reloaded")

    async def _watch_config(self) -> None:
        path = self.settings.config_path
        while True:
            await asyncio.sleep(1.0)
            mtime = _mtime(path)
            if mtime is None or mtime == self._config_mtime:
                continue
            self._config_mtime = mtime
            try:
                config = await asyncio.to_thread(load_config, path)
            except ConfigError as exc:
                self.logs.ring("proxy").write(f"config reload rejected, keeping the last good config: {exc}")
                self.events.publish("config.error", problems=[p.as_dict() for p in exc.problems])
                continue
            except OSError as exc:
                self.logs.ring("proxy").write(f"config reload failed: {exc}")
                continue
            with contextlib.suppress(Exception):
                await self.reload_config(config)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None
