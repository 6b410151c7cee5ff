"""Health and liveness."""

from __future__ import annotations

from litestar import Request, get


@get("/health", tags=["system"], summary="Liveness check")
async def health(request: Request) -> dict[str, str]:
    return {"status": "ok"}
