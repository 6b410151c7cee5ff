"""Request log: `GET /api/requests`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.params import Parameter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.db.models import RequestLog


class RequestRow(msgspec.Struct):
    id: int
    created_at: datetime
    method: str
    path: str
    model: str | None
    upstream_model: str | None
    status_code: int
    duration_ms: float
    ttft_ms: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int | None
    tokens_per_second: float | None
    streamed: bool
    client_addr: str | None
    error: str | None

    @classmethod
    def from_model(cls, row: RequestLog) -> RequestRow:
        return cls(**{field: getattr(row, field) for field in cls.__struct_fields__})


class RequestPage(msgspec.Struct):
    items: list[RequestRow]
    next_cursor: int | None


class RequestController(Controller):
    path = "/api/requests"
    tags = ["requests"]

    @get("/", summary="List logged requests, newest first")
    async def list_requests(
        self,
        db_session: AsyncSession,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
        before: Annotated[int | None, Parameter(description="cursor: return rows with a smaller id")] = None,
        model: str | None = None,
    ) -> RequestPage:
        query = select(RequestLog).order_by(RequestLog.id.desc()).limit(limit + 1)
        if before is not None:
            query = query.where(RequestLog.id < before)
        if model:
            query = query.where(RequestLog.model == model)
        rows = list((await db_session.scalars(query)).all())
        next_cursor = rows[limit - 1].id if len(rows) > limit else None
        return RequestPage(items=[RequestRow.from_model(r) for r in rows[:limit]], next_cursor=next_cursor)
