"""BatchInsertWriter: rows queued in memory and inserted in batches by one task, off the caller's path.

`submit_row` never blocks and never fails: when the bounded queue is full the row is dropped and
counted (metrics and `/api/system` show it). One task drains the queue into one table with Core
`INSERT` executemany statements, grouping rows that carry the same columns, with a few retries.
Subclasses name the table and may prepare a batch (compress, truncate) before it is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("switchyard.writer")


class BatchInsertWriter:
    #: what the rows are, for task names and log messages
    name = "rows"

    def __init__(self, engine: AsyncEngine, table: Table, *, max_queue: int = 10000, batch_size: int = 500):
        self._engine = engine
        self._insert = table.insert()  # a Core insert (executemany), several times cheaper per row than the ORM's
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._queue: deque[dict[str, Any]] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._writing = False
        self.written = 0
        self.dropped = 0
        self.failed = 0

    @property
    def depth(self) -> int:
        return len(self._queue)

    def submit_row(self, row: dict[str, Any]) -> bool:
        """Queue one row; never blocks. Returns False when it had to be dropped."""
        if self._closing or len(self._queue) >= self._max_queue:
            self.dropped += 1
            return False
        self._queue.append(row)
        if not self._wakeup.is_set():
            self._wakeup.set()
        return True

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-writer")

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

    def prepare(self, batch: list[dict[str, Any]]) -> None:
        """Change rows in place just before they are written (runs on the writer task)."""

    def written_batch(self, batch: list[dict[str, Any]]) -> None:
        """Called after a batch is committed."""

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                await asyncio.sleep(0.02)  # let a burst accumulate into one batch
            batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
            if not batch:
                continue
            self._writing = True
            try:
                await self._write(batch)
            finally:
                self._writing = False

    async def _write(self, batch: list[dict[str, Any]]) -> None:
        self.prepare(batch)
        for attempt in range(3):
            try:
                async with self._engine.begin() as connection:
                    for rows in same_columns(batch):
                        await connection.execute(self._insert, rows)
            except Exception:
                if attempt == 2:
                    self.failed += len(batch)
                    log.exception("could not write %d %s", len(batch), self.name)
                    return
                await asyncio.sleep(0.2 * (attempt + 1))
            else:
                self.written += len(batch)
                self.written_batch(batch)
                return


def same_columns(batch: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split a batch into runs of rows with the same keys.

    An executemany INSERT compiles its column list from the first row: a later row with a key the first
    lacks would lose that value silently, and one missing a key fails the whole batch. Rows from different
    producers (proxied requests, MCP relay exchanges) carry different columns, so each run is inserted apart.
    """
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in batch:
        groups.setdefault(frozenset(row), []).append(row)
    return list(groups.values())
