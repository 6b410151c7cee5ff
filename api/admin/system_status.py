"""`GET /api/system` (health, upstreams, versions, database, writers) and `GET /api/gpu`."""

from __future__ import annotations

import platform
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Literal

import msgspec
from litestar import Request, get

from api import __version__
from api.admin.deps import get_runtime
from api.workers.retention import database_size


class Versions(msgspec.Struct):
    switchyard: str
    python: str
    litestar: str | None
    granian: str | None


class DatabaseStatus(msgspec.Struct):
    dialect: str
    #: SQLite: the database file with its WAL; PostgreSQL: pg_database_size
    size_bytes: int | None


class WriterStatus(msgspec.Struct):
    queue_depth: int
    written: int
    dropped: int
    failed: int


class UpstreamStatus(msgspec.Struct):
    name: str
    kind: str  # model | peer
    url: str
    reachable: bool
    status_code: int | None
    latency_ms: float | None
    error: str | None


class SystemStatus(msgspec.Struct):
    #: ok, or degraded when an upstream is unreachable or request-log rows were lost
    status: Literal["ok", "degraded"]
    started_at: float
    uptime_seconds: float
    versions: Versions
    database: DatabaseStatus
    request_log: WriterStatus
    model_events: WriterStatus
    upstreams: list[UpstreamStatus]
    models_configured: int
    models_running: int
    active_profile: str | None
    gpu_readers: list[str]


class GpuInfo(msgspec.Struct):
    index: int
    name: str
    vendor: str
    memory_used_bytes: int
    memory_total_bytes: int
    utilization_percent: float | None
    temperature_c: float | None
    power_watts: float | None
    unified_memory: bool
    core_count: int | None
    uuid: str | None
    bus_id: str | None


class GpuStatus(msgspec.Struct):
    gpus: list[GpuInfo]
    #: Unix time of the last poll; None before the first one or without GPUs
    sampled_at: float | None
    readers: list[str]


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


@get("/api/system", tags=["system"], summary="Health, upstream reachability, uptime, versions, database, writers")
async def system_status(request: Request) -> SystemStatus:
    runtime = get_runtime(request)
    upstreams = [
        UpstreamStatus(r.name, r.kind, r.url, r.reachable, r.status_code, r.latency_ms, r.error)
        for r in await runtime.metrics.upstreams.check()
    ]
    engine = runtime.alchemy.get_engine()
    log_writer, event_writer = runtime.request_log, runtime.model_events
    degraded = any(not u.reachable for u in upstreams) or log_writer.dropped > 0 or log_writer.failed > 0
    states = runtime.engine.states()
    return SystemStatus(
        status="degraded" if degraded else "ok",
        started_at=runtime.started_at,
        uptime_seconds=round(time.time() - runtime.started_at, 3),
        versions=Versions(__version__, platform.python_version(), _version("litestar"), _version("granian")),
        database=DatabaseStatus(engine.dialect.name, await database_size(engine)),
        request_log=WriterStatus(log_writer.depth, log_writer.written, log_writer.dropped, log_writer.failed),
        model_events=WriterStatus(event_writer.depth, event_writer.written, event_writer.dropped, event_writer.failed),
        upstreams=upstreams,
        models_configured=len(runtime.config.models),
        models_running=sum(1 for state in states.values() if state in ("ready", "starting")),
        active_profile=runtime.active_profile,
        gpu_readers=[reader.name for reader in runtime.gpu.readers],
    )


@get("/api/gpu", tags=["system"], summary="The GPUs' latest samples (memory, utilisation, temperature, power)")
async def gpu_status(request: Request) -> GpuStatus:
    runtime = get_runtime(request)
    gpus = [
        GpuInfo(
            index=s.index,
            name=s.name,
            vendor=s.vendor,
            memory_used_bytes=s.memory_used_bytes,
            memory_total_bytes=s.memory_total_bytes,
            utilization_percent=s.utilization_percent,
            temperature_c=s.temperature_c,
            power_watts=s.power_watts,
            unified_memory=s.unified_memory,
            core_count=s.core_count,
            uuid=s.uuid,
            bus_id=s.bus_id,
        )
        for s in runtime.gpu.latest()
    ]
    return GpuStatus(gpus=gpus, sampled_at=runtime.gpu.sampled_at, readers=[r.name for r in runtime.gpu.readers])
