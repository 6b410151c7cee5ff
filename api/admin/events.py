"""`/api/events`: Server-Sent Events for live dashboards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
from litestar import Request, get
from litestar.response import Stream

from api.admin.deps import get_runtime
from api.runtime import Runtime

HEARTBEAT_SECONDS = 15.0
_encode = msgspec.json.Encoder().encode


def sse(event: str, data: object) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + _encode(data) + b"\n\n"


async def _events(runtime: Runtime, heartbeat: float) -> AsyncIterator[bytes]:
    queue = runtime.events.subscribe()
    try:
        # a snapshot first, so a client that (re)connects is immediately up to date
        yield sse("models", {"models": runtime.engine.status(), "profile": runtime.active_profile})
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), heartbeat)
            except TimeoutError:
                engine = runtime.engine
                yield sse("heartbeat", {"in_flight": engine.in_flight_total(), "models": engine.in_flight_by_model()})
                continue
            yield sse(event.type, {**event.data, "at": event.at})
    finally:
        runtime.events.unsubscribe(queue)


@get("/api/events", tags=["events"], summary="Live events (SSE): request.completed, model.state, gpu.sample, …")
async def events(request: Request) -> Stream:
    runtime = get_runtime(request)
    heartbeat = float(request.query_params.get("heartbeat", HEARTBEAT_SECONDS))
    return Stream(
        _events(runtime, max(heartbeat, 0.5)),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )
