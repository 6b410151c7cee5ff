"""RequestLogWriter: requests are put on a bounded in-memory queue and written in batches.

The hot path calls :meth:`RequestLogWriter.submit`, which never waits: when the
queue is full the record is dropped and counted (visible in metrics and the
system API). One task drains the queue into the database in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from api.db.models import RequestLog
from core.capture import compress

log = logging.getLogger("switchyard.requestlog")
# a Core insert (executemany), not an ORM bulk insert: several times cheaper per row
_INSERT = RequestLog.__table__.insert()


class RequestLogWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_queue: int = 10000,
        batch_size: int = 500,
        on_written: Callable[[list[dict[str, Any]]], None] | None = None,
    ):
        self._engine = engine
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._queue: deque[dict[str, Any]] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._on_written = on_written
        self.dropped = 0
        self.written = 0
        self.failed = 0

    @property
    def depth(self) -> int:
        return len(self._queue)

    def submit(self, record: dict[str, Any]) -> bool:
        """Queue one row; never blocks. Returns False when it had to be dropped."""
        if len(self._queue) >= self._max_queue or self._closing:
            self.dropped += 1
            return False
        self._queue.append(record)
        if not self._wakeup.is_set():
            self._wakeup.set()
        return True

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="request-log-writer")

    async def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task

    async def flush(self) -> None:
        """Wait until everything submitted so far is written (tests, prune)."""
        while self._queue or self._writing:
            await asyncio.sleep(0.01)

    _writing = False

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                # let a burst accumulate into one batch
                await asyncio.sleep(0.02)
            batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
            if not batch:
                continue
            self._writing = True
            try:
                await self._write(batch)
            finally:
                self._writing = False

    async def _write(self, batch: list[dict[str, Any]]) -> None:
        for record in batch:
            # captures are compressed here, off the request path
            capture = record.get("capture")
            if isinstance(capture, dict):
                record["capture"] = compress(capture)
        for attempt in range(3):
            try:
                async with self._engine.begin() as connection:
                    for rows in _same_columns(batch):
                        await connection.execute(_INSERT, rows)
            except Exception:
                if attempt == 2:
                    self.failed += len(batch)
                    log.exception("could not write %d request log rows", len(batch))
                    return
                await asyncio.sleep(0.2 * (attempt + 1))
            else:
                self.written += len(batch)
                if self._on_written:
                    self._on_written(batch)
                return


def _same_columns(batch: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split a batch into runs of records with the same keys.

    An executemany INSERT compiles its column list from the first record: a later record with a key the first
    lacks would lose that value silently, and one missing a key fails the whole batch. Records from different
    producers (proxied requests, MCP relay exchanges) carry different columns, so each run is inserted apart.
    """
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for record in batch:
        groups.setdefault(frozenset(record), []).append(record)
    return list(groups.values())
