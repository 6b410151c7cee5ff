"""Request log: search (`GET /api/requests`), histogram buckets, and one request with its capture.

Search filters combine (AND): free text in path, model and error; model (as asked or as
resolved); API key (id or name); status (`200`, a class such as `5xx`, or `error` for ≥ 400);
a time range; streamed or not. Pages are newest first; pass `next_cursor` back as `before` for
the next page: a keyset cursor, so paging stays cheap however deep it goes and rows written
meanwhile do not shift the pages.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Controller, get
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import Parameter
from sqlalchemy import Select, case, cast, func, literal, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import Integer

from api.db.models import RequestLog
from core.capture import decompress


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
    request_bytes: int | None = None
    response_bytes: int | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost_usd: float | None = None
    cost_known: bool = False
    api_key_id: str | None = None
    api_key_name: str | None = None
    client_name: str | None = None
    end_user: str | None = None
    session_id: str | None = None
    policy_rule_id: str | None = None
    policy_action: str | None = None
    routed_model: str | None = None
    credentials_used: list[Any] | None = None
    has_capture: bool = False

    @classmethod
    def from_model(cls, row: RequestLog, has_capture: bool = False) -> RequestRow:
        values = {field: getattr(row, field) for field in cls.__struct_fields__ if field != "has_capture"}
        return cls(**values, has_capture=has_capture)


class RequestPage(msgspec.Struct):
    items: list[RequestRow]
    next_cursor: int | None


class RequestDetail(msgspec.Struct):
    request: RequestRow
    #: headers and bounded bodies both ways, redacted (see core.capture); None when not captured
    capture: dict[str, Any] | None
    capture_error: str | None = None


class HistogramBucket(msgspec.Struct):
    start: datetime
    count: int
    errors: int
    prompt_tokens: int
    completion_tokens: int


class RequestHistogram(msgspec.Struct):
    since: datetime
    until: datetime
    bucket_seconds: float
    buckets: list[HistogramBucket]


_HAS_CAPTURE = RequestLog.capture.is_not(None).label("has_capture")


def parse_status(value: str) -> ColumnElement[bool]:
    """`200` → exactly 200, `4xx` → 400–499, `error` → ≥ 400."""
    text = value.strip().lower()
    if text == "error":
        return RequestLog.status_code >= 400
    if len(text) == 3 and text[0].isdigit() and text[1:] == "xx":
        low = int(text[0]) * 100
        return (RequestLog.status_code >= low) & (RequestLog.status_code < low + 100)
    if text.isdigit():
        return RequestLog.status_code == int(text)
    raise ValidationException("status must be a code (200), a class (4xx) or 'error'")


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def apply_filters(
    query: Select[Any],
    *,
    q: str | None,
    model: str | None,
    key: str | None,
    status: str | None,
    since: datetime | None,
    until: datetime | None,
    streamed: bool | None,
) -> Select[Any]:
    if q:
        pattern = _like(q)
        query = query.where(
            or_(
                RequestLog.path.ilike(pattern, escape="\\"),
                RequestLog.model.ilike(pattern, escape="\\"),
                RequestLog.upstream_model.ilike(pattern, escape="\\"),
                RequestLog.error.ilike(pattern, escape="\\"),
            )
        )
    if model:
        query = query.where(or_(RequestLog.model == model, RequestLog.upstream_model == model))
    if key:
        query = query.where(or_(RequestLog.api_key_id == key, RequestLog.api_key_name == key))
    if status:
        query = query.where(parse_status(status))
    if since is not None:
        query = query.where(RequestLog.created_at >= _utc(since))
    if until is not None:
        query = query.where(RequestLog.created_at < _utc(until))
    if streamed is not None:
        query = query.where(RequestLog.streamed.is_(streamed))
    return query


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _epoch_seconds(dialect: str) -> ColumnElement[float]:
    """created_at as Unix seconds, in each database's own dialect."""
    if dialect == "sqlite":
        return (func.julianday(RequestLog.created_at) - 2440587.5) * 86400.0
    if dialect == "postgresql":
        return func.extract("epoch", RequestLog.created_at)
    # MySQL / MariaDB: DATETIME columns hold UTC without a zone
    return func.timestampdiff(text("MICROSECOND"), literal("1970-01-01 00:00:00"), RequestLog.created_at) / 1e6


class RequestController(Controller):
    path = "/api/requests"
    tags = ["requests"]

    @get("/", summary="Search logged requests, newest first (cursor pagination)")
    async def list_requests(
        self,
        db_session: AsyncSession,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
        before: Annotated[int | None, Parameter(description="cursor: return rows with a smaller id")] = None,
        q: Annotated[str | None, Parameter(description="text in path, model or error")] = None,
        model: Annotated[str | None, Parameter(description="model as asked or as resolved")] = None,
        key: Annotated[str | None, Parameter(description="API key id or name")] = None,
        status: Annotated[str | None, Parameter(description="200, 4xx or error")] = None,
        since: Annotated[datetime | None, Parameter(description="from this time (inclusive)")] = None,
        until: Annotated[datetime | None, Parameter(description="until this time (exclusive)")] = None,
        streamed: bool | None = None,
    ) -> RequestPage:
        query = select(RequestLog, _HAS_CAPTURE).order_by(RequestLog.id.desc()).limit(limit + 1)
        if before is not None:
            query = query.where(RequestLog.id < before)
        query = apply_filters(
            query, q=q, model=model, key=key, status=status, since=since, until=until, streamed=streamed
        )
        rows = (await db_session.execute(query)).all()
        next_cursor = rows[limit - 1][0].id if len(rows) > limit else None
        return RequestPage(items=[RequestRow.from_model(r, bool(c)) for r, c in rows[:limit]], next_cursor=next_cursor)

    @get("/histogram", summary="Requests, errors and tokens in equal time buckets")
    async def histogram(
        self,
        db_session: AsyncSession,
        since: datetime | None = None,
        until: datetime | None = None,
        buckets: Annotated[int, Parameter(ge=1, le=1000)] = 60,
        q: str | None = None,
        model: str | None = None,
        key: str | None = None,
        status: str | None = None,
        streamed: bool | None = None,
    ) -> RequestHistogram:
        end = _utc(until) if until else datetime.now(UTC)
        start = _utc(since) if since else end - timedelta(hours=24)
        if start >= end:
            raise ValidationException("since must be before until")
        width = (end - start).total_seconds() / buckets
        dialect = db_session.get_bind().dialect.name
        offset = (_epoch_seconds(dialect) - start.timestamp()) / width
        index = cast(offset, Integer) if dialect == "sqlite" else func.floor(offset)  # offset ≥ 0: truncation is floor
        query = apply_filters(
            select(
                index.label("bucket"),
                func.count(),
                func.sum(case((RequestLog.status_code >= 400, 1), else_=0)),
                func.sum(RequestLog.prompt_tokens),
                func.sum(RequestLog.completion_tokens),
            ),
            q=q,
            model=model,
            key=key,
            status=status,
            since=start,
            until=end,
            streamed=streamed,
        ).group_by("bucket")
        counts: dict[int, tuple[int, int, int, int]] = {}
        for bucket, count, errors, prompt, completion in (await db_session.execute(query)).all():
            slot = min(max(math.floor(float(bucket)), 0), buckets - 1)
            previous = counts.get(slot, (0, 0, 0, 0))
            counts[slot] = (
                previous[0] + int(count),
                previous[1] + int(errors or 0),
                previous[2] + int(prompt or 0),
                previous[3] + int(completion or 0),
            )
        out = []
        for slot in range(buckets):
            count, errors, prompt, completion = counts.get(slot, (0, 0, 0, 0))
            out.append(HistogramBucket(start + timedelta(seconds=slot * width), count, errors, prompt, completion))
        return RequestHistogram(since=start, until=end, bucket_seconds=width, buckets=out)

    @get("/{request_id:int}", summary="One request with its capture (headers and bounded bodies, redacted)")
    async def request_detail(self, db_session: AsyncSession, request_id: int) -> RequestDetail:
        found = (
            await db_session.execute(
                select(RequestLog, RequestLog.capture.label("capture_blob")).where(RequestLog.id == request_id)
            )
        ).first()
        if found is None:
            raise NotFoundException(f"no request with id {request_id}")
        row, blob = found
        capture, problem = None, None
        if blob is not None:
            try:
                capture = decompress(blob)
            except ValueError as exc:
                problem = str(exc)
        return RequestDetail(
            request=RequestRow.from_model(row, blob is not None), capture=capture, capture_error=problem
        )
