"""Runtime: the live objects one gateway process owns (config, swap engine, clients, log writer).

Created by :func:`api.app.create_app`, started and stopped by the Litestar lifespan.
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

from api.auth.sign_in import SignIn
from api.db.engine import make_alchemy_config
from api.metrics import GatewayMetrics
from api.settings import Settings
from api.settings_store import RuntimeSettings, SettingsStore
from api.workers.model_events import ModelEventWriter
from api.workers.request_log import RequestLogWriter
from api.workers.retention import RetentionTask
from core.config import Config, ConfigError, load_config
from core.config.schema import PeerConfig, ProfileConfig, Timeouts
from core.events import EventBus
from core.gpu import GpuPoller, GpuSample, detect_readers
from core.logbook import LogBook
from core.selectors import SelectorRouter
from core.swap.engine import SwapEngine

log = logging.getLogger("switchyard")


def _timeout(t: Timeouts) -> httpx.Timeout:
    return httpx.Timeout(connect=t.connect or None, read=None, write=None, pool=None)


class Runtime:
    def __init__(self, settings: Settings, config: Config):
        self.settings = settings
        self.config = config
        self.started_at = time.time()
        self.logs = LogBook()
        self.events = EventBus()
        self.engine = SwapEngine(
            config, logs=self.logs, events=self.events, starvation_bound=settings.starvation_bound,
            on_model_event=self._model_event,
        )
        self.alchemy = make_alchemy_config(settings.database_url)
        self.request_log = RequestLogWriter(self.alchemy.get_engine(), max_queue=settings.log_queue_size)
        self.settings_store = SettingsStore(self.alchemy.get_engine())
        self.local_http = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=30, read=None, write=None, pool=None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=256, keepalive_expiry=30),
            trust_env=False,
        )
        self._peer_clients: dict[str, tuple[PeerConfig, httpx.AsyncClient]] = {}
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
        await self.model_events.start()
        await self.engine.start()
        self.gpu.start()
        self.retention.start()
        self._config_mtime = _mtime(self.settings.config_path)
        if self.settings.watch_config:
            self._watch_task = asyncio.create_task(self._watch_config(), name="config-watcher")
        self.logs.ring("proxy").write(f"switchyard started with {len(self.config.models)} models")

    async def stop(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
        await self.retention.stop()
        await self.gpu.stop()
        await self.engine.shutdown()
        await self.request_log.close()
        await self.model_events.close()
        await self.local_http.aclose()
        for _, client in self._peer_clients.values():
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

    def peer_client(self, peer: PeerConfig) -> httpx.AsyncClient:
        cached = self._peer_clients.get(peer.id)
        if cached is not None and cached[0] == peer:
            return cached[1]
        client = httpx.AsyncClient(timeout=_timeout(peer.timeouts), trust_env=False, follow_redirects=False)
        if cached is not None:
            stale = cached[1]
            asyncio.get_running_loop().call_later(60, lambda: asyncio.ensure_future(stale.aclose()))
        self._peer_clients[peer.id] = (peer, client)
        return client

    def request_completed(self, record: dict[str, Any]) -> None:
        """Called by the gateway once per finished request; never blocks."""
        self.request_log.submit(record)
        self.metrics.observe_request(record)
        self.events.publish(
            "request.completed",
            model=record["model"],
            path=record["path"],
            status=record["status_code"],
            duration_ms=round(record["duration_ms"], 2),
            prompt_tokens=record["prompt_tokens"],
            completion_tokens=record["completion_tokens"],
        )

    # ------------------------------------------------------------------- admin

    def authenticate_admin_key(self, secret: str) -> bool:
        """Whether `secret` is a database API key with the admin scope (connected by the keys issue)."""
        return False

    def _model_event(self, model_id: str, state: str, data: dict[str, Any]) -> None:
        """The swap engine's state-change callback: history row and load-time metric, never blocking."""
        self.model_events.submit(model_id, state, data)
        self.metrics.observe_model_event(model_id, state, data)

    def _gpu_sampled(self, samples: list[GpuSample]) -> None:
        self.events.publish("gpu.sample", gpus=[dataclasses.asdict(sample) for sample in samples])

    # ----------------------------------------------------------- config reload

    async def reload_config(self, config: Config) -> None:
        await self.engine.reload(config)
        self.config = config
        self.selectors = SelectorRouter(config)
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
