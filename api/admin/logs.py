"""Model server and gateway logs: history and live streams (llama-swap's /logs endpoints)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from litestar import Request, get
from litestar.exceptions import NotFoundException
from litestar.response import Stream

from api.admin.deps import get_runtime
from api.runtime import Runtime
from core.logbook import LogLine


def log_sources(runtime: Runtime, source: str) -> list[str]:
    """'' → everything, 'proxy' → the gateway, 'upstream' → every model, else one model id/alias."""
    models = sorted(runtime.config.models)
    if source == "":
        return ["proxy", *models]
    if source == "proxy":
        return ["proxy"]
    if source == "upstream":
        return models
    real = runtime.config.real_model_id(source)
    if real is None:
        raise NotFoundException("invalid log source; use 'proxy', 'upstream' or a model id")
    return [real]


def _format(line: LogLine, prefix: bool) -> bytes:
    text = f"[{line.source}] {line.text}" if prefix and line.source != "proxy" else line.text
    return (text + "\n").encode()


@get("/logs", tags=["logs"], summary="Log history (gateway and every model) as text", media_type="text/plain")
async def logs_history(request: Request) -> bytes:
    runtime = get_runtime(request)
    return b"".join(_format(line, True) for line in runtime.logs.history(log_sources(runtime, "")))


async def _stream(runtime: Runtime, sources: list[str], history: bool) -> AsyncIterator[bytes]:
    queue: asyncio.Queue[LogLine] = asyncio.Queue(maxsize=1000)
    prefix = len(sources) > 1
    runtime.logs.subscribe(sources, queue)
    try:
        if history:
            lines = runtime.logs.history(sources)
            if lines:
                yield b"".join(_format(line, prefix) for line in lines)
        while True:
            line = await queue.get()
            yield _format(line, prefix)
    finally:
        runtime.logs.unsubscribe(queue)


def _stream_response(request: Request, source: str) -> Stream:
    runtime = get_runtime(request)
    sources = log_sources(runtime, source.strip("/"))
    history = "no-history" not in request.query_params
    return Stream(
        _stream(runtime, sources, history),
        media_type="text/plain; charset=utf-8",
        headers={"x-accel-buffering": "no", "x-content-type-options": "nosniff", "cache-control": "no-cache"},
    )


@get("/logs/stream", tags=["logs"], summary="Live log stream of the gateway and every model")
async def logs_stream_all(request: Request) -> Stream:
    return _stream_response(request, "")


@get("/logs/stream/{source:path}", tags=["logs"], summary="Live log stream: proxy, upstream or a model id")
async def logs_stream(request: Request, source: str) -> Stream:
    return _stream_response(request, source)
