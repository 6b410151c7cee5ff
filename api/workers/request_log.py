"""RequestLogWriter: every finished request becomes one `request_logs` row, written in batches.

The hot path calls :meth:`RequestLogWriter.submit`, which never waits: when the queue is full the
record is dropped and counted (visible in metrics and the system API).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from api.db.models import RequestLog
from api.workers.batch_writer import BatchInsertWriter
from core.capture import compress


class RequestLogWriter(BatchInsertWriter):
    name = "request log rows"

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_queue: int = 10000,
        batch_size: int = 500,
        on_written: Callable[[list[dict[str, Any]]], None] | None = None,
    ):
        super().__init__(engine, RequestLog.__table__, max_queue=max_queue, batch_size=batch_size)
        self._on_written = on_written

    def submit(self, record: dict[str, Any]) -> bool:
        """Queue one request's row; never blocks. Returns False when it had to be dropped."""
        return self.submit_row(record)

    def prepare(self, batch: list[dict[str, Any]]) -> None:
        for record in batch:
            # captures are compressed here, off the request path
            capture = record.get("capture")
            if isinstance(capture, dict):
                record["capture"] = compress(capture)

    def written_batch(self, batch: list[dict[str, Any]]) -> None:
        if self._on_written:
            self._on_written(batch)
