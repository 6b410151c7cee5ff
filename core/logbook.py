"""In-memory log rings with live subscribers: the gateway's own log and each model server's output."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LogLine:
    source: str  # "proxy" or a model id
    text: str
    at: float


class LogRing:
    """The last `capacity` lines of one source, plus live subscribers."""

    def __init__(self, source: str, capacity: int = 1000):
        self.source = source
        self._lines: deque[LogLine] = deque(maxlen=capacity)
        self._subscribers: set[asyncio.Queue[LogLine]] = set()

    def write(self, text: str) -> None:
        line = LogLine(self.source, text.rstrip("\n"), time.time())
        self._lines.append(line)
        for queue in self._subscribers:
            if queue.full():  # a slow reader loses its oldest lines, never blocks the writer
                queue.get_nowait()
            queue.put_nowait(line)

    def tail(self, count: int | None = None) -> list[LogLine]:
        lines = list(self._lines)
        return lines if count is None else lines[-count:]

    def tail_text(self, count: int = 20) -> str:
        return "\n".join(line.text for line in self.tail(count))

    def subscribe(self, queue: asyncio.Queue[LogLine]) -> None:
        self._subscribers.add(queue)

    def unsubscribe(self, queue: asyncio.Queue[LogLine]) -> None:
        self._subscribers.discard(queue)


class LogBook:
    """All log rings by source; `proxy` is the gateway's own log."""

    def __init__(self, capacity: int = 1000):
        self.capacity = capacity
        self._rings: dict[str, LogRing] = {}

    def ring(self, source: str) -> LogRing:
        ring = self._rings.get(source)
        if ring is None:
            ring = self._rings[source] = LogRing(source, self.capacity)
        return ring

    def sources(self) -> list[str]:
        return sorted(self._rings)

    def history(self, sources: list[str] | None = None) -> list[LogLine]:
        rings = [self._rings[s] for s in (self._rings if sources is None else sources) if s in self._rings]
        return sorted((line for ring in rings for line in ring.tail()), key=lambda line: line.at)

    def subscribe(self, sources: list[str] | None, queue: asyncio.Queue[LogLine]) -> None:
        for source in self.sources() if sources is None else sources:  # [] is no source at all
            self.ring(source).subscribe(queue)

    def unsubscribe(self, queue: asyncio.Queue[LogLine]) -> None:
        for ring in self._rings.values():
            ring.unsubscribe(queue)
