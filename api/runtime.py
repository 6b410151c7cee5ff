"""Runtime: the live objects one gateway process owns (config, swap engine, clients, log writer).

Created by :func:`api.app.create_app`, started and stopped by the Litestar lifespan.

`file_config` is config.yaml as loaded; `config` is what is served: the file's models plus the models the
model library generates (see api.library). Every change to either goes through :meth:`Runtime.apply_config`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import httpx

from api.access_store import AccessStore
from api.auth.sign_in import SignIn
from api.db.engine import make_alchemy_config
from api.gateway.ollama_listener import OllamaListener
from api.library import LibraryService
from api.metrics import GatewayMetrics
from api.settings import Settings
from api.settings_store import RuntimeSettings, SettingsStore
from api.workers.model_events import ModelEventWriter
from api.workers.request_log import RequestLogWriter
from api.workers.retention import RetentionTask
from core.config import Config, ConfigError, load_config
from core.config.schema import ProfileConfig
from core.events import EventBus
from core.gpu import GpuPoller, GpuSample, detect_readers
from core.keys import SCOPE_ADMIN
from core.logbook import LogBook
from core.pricing import PricingCatalog
from core.selectors import SelectorRouter
from core.swap.engine import SwapEngine
from core.upstream.client import UpstreamClient

log = logging.getLogger("switchyard")


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
            on_model_event=self._model_event,
        )
        self.alchemy = make_alchemy_config(settings.database_url)
        self.request_log = RequestLogWriter(self.alchemy.get_engine(), max_queue=settings.log_queue_size)
        self.settings_store = SettingsStore(self.alchemy.get_engine())
        self.upstreams = UpstreamClient()  # the hot path's upstream client (see core.upstream.client)
        # a general-purpose client for everything else that talks HTTP (MCP relays, probes)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(30, read=None), trust_env=False)
        self._http_insecure: httpx.AsyncClient | None = None
        # pricing: the configured file, else the last refreshed copy, else the snapshot shipped with the package
        self.pricing_cache_path = Path(settings.pricing_path or "data/pricing.json")
        self.pricing = PricingCatalog.load(self.pricing_cache_path if self.pricing_cache_path.is_file() else None)
        # access control (issue 5): keys, policy, vault, relays; read by the gateway without database I/O
        self.access = AccessStore(
            self.alchemy.get_engine(),
            settings.secret_key,
            admin_token=settings.admin_token,
            config_keys=config.api_keys,
            attribution_source=lambda: self.settings_store.current.attribution,
            on_external_change=self.settings_store.load,
        )
        self.selectors = SelectorRouter(config)
        self.active_profile: str | None = config.startup_profile or None
        self._config_mtime: float | None = None
        self._watch_task: asyncio.Task[None] | None = None
        # ---- admin (issue 6): model history, metrics, GPU monitoring, sign-in, retention
        self.model_events = ModelEventWriter(self.alchemy.get_engine())
        self.metrics = GatewayMetrics(self)
        self.gpu = GpuPoller(detect_readers(), interval=settings.gpu_poll_seconds, on_sample=self._gpu_sampled)
        self.sign_in = SignIn(self.alchemy.get_engine(), settings)
        self.retention = RetentionTask(self)
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
        await self.access.start()
        await self.request_log.start()
        await self.model_events.start()
        await self.engine.start()
        self.gpu.start()
        self.retention.start()
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
        await self.retention.stop()
        await self.gpu.stop()
        await self.engine.shutdown()
        await self.access.stop()
        await self.request_log.close()
        await self.model_events.close()
        await self.upstreams.aclose()
        await self.http.aclose()
        if self._http_insecure is not None:
            await self._http_insecure.aclose()
        await self.alchemy.get_engine().dispose()

    def http_for(self, *, insecure: bool) -> httpx.AsyncClient:
        """The general-purpose client, or one that skips TLS verification (for `insecure` peers and upstreams)."""
        if not insecure:
            return self.http
        if self._http_insecure is None:
            self._http_insecure = httpx.AsyncClient(timeout=httpx.Timeout(30, read=None), trust_env=False, verify=False)
        return self._http_insecure

    @property
    def active_profile_config(self) -> ProfileConfig | None:
        return self.config.profiles.get(self.active_profile) if self.active_profile else None

    def set_profile(self, profile: str | None) -> None:
        if profile is not None and profile not in self.config.profiles:
            raise KeyError(profile)
        self.active_profile = profile
        self.events.publish("profile.changed", active=profile)

    def request_completed(self, record: dict[str, Any]) -> None:
        """Called by the gateway once per finished request; never blocks."""
        self.request_log.submit(record)
        self.metrics.observe_request(record)
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

    # ------------------------------------------------------------------- admin

    def authenticate_admin_key(self, secret: str) -> bool:
        """Whether `secret` is a valid API key with the admin scope (database keys and the bootstrap token)."""
        result = self.access.key_table.authenticate(secret)
        return result.ok and result.record is not None and result.record.has_scope(SCOPE_ADMIN)

    def _model_event(self, model_id: str, state: str, data: dict[str, Any]) -> None:
        """The swap engine's state-change callback: history row, load-time metric, library bookkeeping."""
        self.model_events.submit(model_id, state, data)
        self.metrics.observe_model_event(model_id, state, data)
        self.library.on_model_state(model_id, state, data)

    def _gpu_sampled(self, samples: list[GpuSample]) -> None:
        self.events.publish("gpu.sample", gpus=[dataclasses.asdict(sample) for sample in samples])

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
            await self.access.reload(config_keys=merged.api_keys)  # the config's apiKeys are part of the key table

    async def reload_config(self, config: Config) -> None:
        await self.apply_config(config)
        config = self.config
        self.active_profile = config.startup_profile or None  # llama-swap: a reload selects the startup profile
        self.events.publish("config.reloaded", models=len(config.models))
        self.logs.ring("proxy").write("config reloaded")

    def config_written(self) -> None:
        """The admin API has just written the config file and reloads it itself: the watcher need not."""
        self._config_mtime = _mtime(self.settings.config_path)

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
