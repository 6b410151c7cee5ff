"""ModelEventWriter: model state changes into the `model_events` table, off the engine's path.

The swap engine calls :meth:`ModelEventWriter.submit` from inside its state machine (through
`SwapEngine(on_model_event=...)`), so submit only appends to a bounded deque and wakes a task
that writes batches. A full queue drops the event and counts it; the history is for people and
dashboards, never a reason to slow a model swap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from api.db.admin_models import ModelEvent

log = logging.getLogger("switchyard.model_events")


class ModelEventWriter:
    def __init__(self, engine: AsyncEngine, *, max_queue: int = 10000, batch_size: int = 200):
        self._engine = engine
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._queue: deque[dict[str, Any]] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.written = 0
        self.dropped = 0
        self.failed = 0

    @property
    def depth(self) -> int:
        return len(self._queue)

    def submit(self, model_id: str, state: str, data: dict[str, Any]) -> bool:
        """Queue one state change (the engine's `model.state` data); never blocks."""
        if self._closing or len(self._queue) >= self._max_queue:
            self.dropped += 1
            return False
        reason = data.get("reason")
        self._queue.append(
            {
                "at": datetime.now(UTC),
                "model": model_id[:255],
                "state": state[:20],
                "previous": (data.get("previous") or None),
                "load_seconds": data.get("load_seconds"),
                "reason": str(reason)[:255] if reason is not None else None,
            }
        )
        self._wakeup.set()
        return True

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="model-event-writer")

    async def close(self, timeout: float = 5.0) -> None:
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

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                await asyncio.sleep(0.02)  # a swap changes several models at once: one batch
            batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
            if batch:
                await self._write(batch)

    async def _write(self, batch: list[dict[str, Any]]) -> None:
        for attempt in range(3):
            try:
                async with self._engine.begin() as connection:
                    await connection.execute(insert(ModelEvent), batch)
            except Exception:
                if attempt == 2:
                    self.failed += len(batch)
                    log.exception("could not write %d model events", len(batch))
                    return
                await asyncio.sleep(0.2 * (attempt + 1))
            else:
                self.written += len(batch)
                return
