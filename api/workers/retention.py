"""Retention and compaction: old request rows and model events go, the database file shrinks.

`prune()` deletes request-log rows and model events older than the retention (the live setting
`retention_days`; 0 keeps everything) and expired sign-in sessions. `RetentionTask` runs it once
an hour in the gateway; `POST /api/maintenance/prune` runs it on demand. `compact()` gives the
freed space back: SQLite `VACUUM`, PostgreSQL `VACUUM ANALYZE`, MariaDB `OPTIMIZE TABLE`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import delete, text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.db.admin_models import ModelEvent, UserSession
from api.db.models import RequestLog

if TYPE_CHECKING:
    from api.runtime import Runtime

log = logging.getLogger("switchyard.retention")

PRUNE_INTERVAL_SECONDS = 3600.0
FIRST_PRUNE_DELAY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class PruneResult:
    cutoff: datetime | None  # None: retention is 0, nothing was old enough
    request_logs: int
    model_events: int
    sessions: int


@dataclass(frozen=True, slots=True)
class CompactResult:
    dialect: str
    size_before: int | None
    size_after: int | None
    seconds: float


async def prune(engine: AsyncEngine, retention_days: int) -> PruneResult:
    """Apply a retention in days (0 keeps every row; expired sessions go anyway)."""
    cutoff = datetime.now(UTC) - timedelta(days=retention_days) if retention_days > 0 else None
    return await prune_before(engine, cutoff)


async def prune_before(engine: AsyncEngine, cutoff: datetime | None) -> PruneResult:
    """Delete request rows and model events older than `cutoff` (None: none) and expired sessions."""
    request_logs = model_events = 0
    async with engine.begin() as connection:
        if cutoff is not None:
            request_logs = (await connection.execute(delete(RequestLog).where(RequestLog.created_at < cutoff))).rowcount
            model_events = (await connection.execute(delete(ModelEvent).where(ModelEvent.at < cutoff))).rowcount
        expired = delete(UserSession).where(UserSession.expires_at <= datetime.now(UTC))
        sessions = (await connection.execute(expired)).rowcount
    return PruneResult(cutoff, request_logs or 0, model_events or 0, sessions or 0)


async def database_size(engine: AsyncEngine) -> int | None:
    """Bytes the database takes: the SQLite files (with WAL), `pg_database_size`, or MariaDB's table sizes."""
    dialect = engine.dialect.name
    if dialect == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:":
            return None
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                total += Path(database + suffix).stat().st_size
        return total
    query = {
        "postgresql": "SELECT pg_database_size(current_database())",
        "mysql": "SELECT SUM(data_length + index_length) FROM information_schema.tables WHERE table_schema = DATABASE()",
        "mariadb": "SELECT SUM(data_length + index_length) FROM information_schema.tables WHERE table_schema = DATABASE()",
    }.get(dialect)
    if query is None:
        return None
    async with engine.connect() as connection:
        value = await connection.scalar(text(query))
    return int(value) if value is not None else None


async def compact(engine: AsyncEngine) -> CompactResult:
    dialect = engine.dialect.name
    started = time.perf_counter()
    before = await database_size(engine)
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        if dialect == "sqlite":
            await autocommit.execute(text("VACUUM"))
            await autocommit.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        elif dialect == "postgresql":
            await autocommit.execute(text("VACUUM ANALYZE"))
        elif dialect in ("mysql", "mariadb"):
            for table in ("request_logs", "model_events"):
                await autocommit.execute(text(f"OPTIMIZE TABLE {table}"))
    return CompactResult(dialect, before, await database_size(engine), time.perf_counter() - started)


class RetentionTask:
    """Prunes once shortly after start, then every hour, with the retention in effect at that moment."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        interval: float = PRUNE_INTERVAL_SECONDS,
        first_delay: float = FIRST_PRUNE_DELAY_SECONDS,
    ):
        self._runtime = runtime
        self.interval = interval
        self.first_delay = first_delay
        self.last: PruneResult | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> PruneResult:
        runtime = self._runtime
        self.last = await prune(runtime.alchemy.get_engine(), runtime.live.retention_days)
        if self.last.request_logs or self.last.model_events:
            runtime.logs.ring("proxy").write(
                f"retention: deleted {self.last.request_logs} request rows and {self.last.model_events} model events "
                f"older than {runtime.live.retention_days} days"
            )
        return self.last

    async def _run(self) -> None:
        await asyncio.sleep(self.first_delay)
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("pruning old rows failed")
            await asyncio.sleep(self.interval)
