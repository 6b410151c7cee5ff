"""A small in-process publish/subscribe bus for live dashboards (SSE `/api/events`)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    type: str  # e.g. "request.completed", "model.state"
    data: dict[str, Any]
    at: float = field(default_factory=time.time)


class EventBus:
    """Fan-out of events to bounded subscriber queues; publishing never blocks or fails."""

    def __init__(self, queue_size: int = 1000):
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[Event]] = set()

    def publish(self, type_: str, **data: Any) -> None:
        if not self._subscribers:
            return
        event = Event(type_, data)
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._subscribers.discard(queue)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
