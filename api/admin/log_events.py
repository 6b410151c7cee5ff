"""`/api/log-events`: model server and gateway log lines as Server-Sent Events.

The `/logs/stream` endpoints (llama-swap's) stream plain text; this is the same feed for
dashboards: one `log` event per line with its source, text and time, heartbeats in between,
and optionally the recent history first. A slow reader loses its oldest lines, it never slows
a model server's output.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from litestar import Request, get
from litestar.params import Parameter
from litestar.response import Stream

from api.admin.deps import get_runtime
from api.admin.events import HEARTBEAT_SECONDS, sse
from api.admin.logs import log_sources
from api.runtime import Runtime
from core.logbook import LogLine


def _line(line: LogLine) -> bytes:
    return sse("log", {"source": line.source, "text": line.text, "at": line.at})


async def _log_events(runtime: Runtime, sources: list[str], history: bool, heartbeat: float) -> AsyncIterator[bytes]:
    queue: asyncio.Queue[LogLine] = asyncio.Queue(maxsize=1000)
    runtime.logs.subscribe(sources, queue)
    try:
        yield sse("sources", {"sources": sources})
        if history:
            for line in runtime.logs.history(sources):
                yield _line(line)
        while True:
            try:
                line = await asyncio.wait_for(queue.get(), heartbeat)
            except TimeoutError:
                yield sse("heartbeat", {})
                continue
            yield _line(line)
    finally:
        runtime.logs.unsubscribe(queue)


@get("/api/log-events", tags=["events"], summary="Live log lines (SSE `log` events: source, text, at)")
async def log_events(
    request: Request,
    source: Annotated[str, Parameter(description="'' for all, 'proxy', 'upstream' or a model id")] = "",
    history: Annotated[bool, Parameter(description="send the recent lines first")] = False,
    heartbeat: Annotated[float, Parameter(ge=0.5, le=300)] = HEARTBEAT_SECONDS,
) -> Stream:
    runtime = get_runtime(request)
    sources = log_sources(runtime, source.strip("/"))
    return Stream(
        _log_events(runtime, sources, history, heartbeat),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )
