"""ModelEventWriter: model state changes into the `model_events` table, off the engine's path.

The swap engine calls :meth:`ModelEventWriter.submit` from inside its state machine (through
`SwapEngine(on_model_event=...)`), so submit only appends to a bounded deque and wakes a task
that writes batches. A full queue drops the event and counts it; the history is for people and
dashboards, never a reason to slow a model swap.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from api.db.admin_models import ModelEvent
from api.workers.batch_writer import BatchInsertWriter


class ModelEventWriter(BatchInsertWriter):
    name = "model events"

    def __init__(self, engine: AsyncEngine, *, max_queue: int = 10000, batch_size: int = 200):
        super().__init__(engine, ModelEvent.__table__, max_queue=max_queue, batch_size=batch_size)

    def submit(self, model_id: str, state: str, data: dict[str, Any]) -> bool:
        """Queue one state change (the engine's `model.state` data); never blocks."""
        reason = data.get("reason")
        return self.submit_row(
            {
                "at": datetime.now(UTC),
                "model": model_id[:255],
                "state": state[:20],
                "previous": (data.get("previous") or None),
                "load_seconds": data.get("load_seconds"),
                "reason": str(reason)[:255] if reason is not None else None,
            }
        )
