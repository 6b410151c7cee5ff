"""`/api/models`: local models with live state and request statistics; history, config, load and unload.

Model ids may contain slashes (`org/model`), so one `{model_path:path}` route per method takes
the rest of the path and reads it as `<id>`, `<id>/config`, `<id>/load` or `<id>/unload` (an id
that itself ends in `/config` still wins as a whole). llama-swap's `POST /api/models/unload` and
`/api/models/unload/<id>` keep their own, more specific routes in `api.admin.models`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
import yaml
from litestar import Controller, Request, get, post
from litestar.exceptions import ClientException, HTTPException, NotFoundException
from litestar.params import Parameter
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.admin.deps import get_runtime
from api.db.admin_models import ModelEvent
from api.db.models import RequestLog
from api.runtime import Runtime
from core.swap.capacity import CapacityError
from core.swap.engine import GatewayShuttingDown
from core.swap.scheduler import ConcurrencyLimitError, ModelUnloadedError
from core.upstream.process import UpstreamStartError


class ModelStats(msgspec.Struct):
    """Requests to this model since `since` (from the request log)."""

    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: mean generation speed over requests that reported one
    tokens_per_second: float | None = None
    #: mean time to first token, ms
    ttft_ms: float | None = None


class ModelSummary(msgspec.Struct):
    id: str
    name: str
    description: str
    aliases: list[str]
    state: str
    proxy: str
    port: int | None
    pid: int | None
    #: seconds since the server became ready (None unless ready)
    uptime_seconds: float | None
    in_flight: int
    queued: int
    ttl: int
    last_load_seconds: float | None
    unlisted: bool
    stats: ModelStats


class ModelList(msgspec.Struct):
    models: list[ModelSummary]
    since: datetime
    swaps: int


class ModelEventRow(msgspec.Struct):
    at: datetime
    state: str
    previous: str | None
    load_seconds: float | None
    reason: str | None


class ModelDetail(msgspec.Struct):
    model: ModelSummary
    since: datetime
    #: state changes, newest first
    history: list[ModelEventRow]


class ModelConfigSnippet(msgspec.Struct):
    model: str
    #: the model's entry as YAML (macros expanded)
    yaml: str


class ModelAction(msgspec.Struct, omit_defaults=True):
    model: str
    action: Literal["load", "unload"]
    state: str | None
    origin: str | None = None  # who started the model ("admin" outranks "api" under library.maxLoaded)
    seconds: float | None = None  # how long the load took


def _since(hours: float) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)


async def model_stats(db: AsyncSession, since: datetime, model: str | None = None) -> dict[str, ModelStats]:
    """Per-model request statistics from the request log, keyed by the resolved model id."""
    query = (
        select(
            RequestLog.upstream_model,
            func.count(),
            func.sum(case((RequestLog.status_code >= 400, 1), else_=0)),
            func.sum(RequestLog.prompt_tokens),
            func.sum(RequestLog.completion_tokens),
            func.avg(RequestLog.tokens_per_second),
            func.avg(RequestLog.ttft_ms),
        )
        .where(RequestLog.created_at >= since, RequestLog.upstream_model.is_not(None))
        .group_by(RequestLog.upstream_model)
    )
    if model is not None:
        query = query.where(RequestLog.upstream_model == model)
    out = {}
    for name, count, errors, prompt, completion, tps, ttft in (await db.execute(query)).all():
        out[name] = ModelStats(
            requests=int(count),
            errors=int(errors or 0),
            prompt_tokens=int(prompt or 0),
            completion_tokens=int(completion or 0),
            tokens_per_second=round(float(tps), 3) if tps is not None else None,
            ttft_ms=round(float(ttft), 3) if ttft is not None else None,
        )
    return out


def summarize(runtime: Runtime, status: dict[str, Any], stats: ModelStats | None) -> ModelSummary:
    model = runtime.config.models[status["model"]]
    ready_since = status["ready_since"]
    uptime = round(time.monotonic() - ready_since, 3) if status["state"] == "ready" and ready_since else None
    return ModelSummary(
        id=model.id,
        name=model.name,
        description=model.description,
        aliases=list(model.aliases),
        state=status["state"],
        proxy=model.proxy,
        port=urlsplit(model.proxy).port,
        pid=status["pid"],
        uptime_seconds=uptime,
        in_flight=status["in_flight"],
        queued=status["queued"],
        ttl=model.ttl,
        last_load_seconds=status["last_load_seconds"],
        unlisted=model.unlisted,
        stats=stats or ModelStats(),
    )


def _split(runtime: Runtime, model_path: str, actions: tuple[str, ...]) -> tuple[str, str | None]:
    """(model id, action) from `<id>` or `<id>/<action>`; 404 when no model matches."""
    path = model_path.strip("/")
    real = runtime.config.real_model_id(path)
    if real is not None:
        return real, None
    head, _, tail = path.rpartition("/")
    if tail in actions:
        real = runtime.config.real_model_id(head)
        if real is not None:
            return real, tail
    raise NotFoundException(f"no local model matches {path!r}")


class ModelAdminController(Controller):
    path = "/api/models"
    tags = ["models"]

    @get("/", summary="Local models: state, port, uptime, in-flight and queued requests, request statistics")
    async def list_models(
        self,
        request: Request,
        db_session: AsyncSession,
        hours: Annotated[float, Parameter(gt=0, le=24 * 3650, description="statistics window")] = 24,
    ) -> ModelList:
        runtime = get_runtime(request)
        since = _since(hours)
        stats = await model_stats(db_session, since)
        models = [summarize(runtime, s, stats.get(s["model"])) for s in runtime.engine.status()]
        return ModelList(models=models, since=since, swaps=runtime.engine.swap_count)

    @get(
        "/{model_path:path}",
        summary="One model with its load/unload history (`/api/models/{id}`), or its YAML (`/api/models/{id}/config`)",
    )
    async def model_detail(
        self,
        request: Request,
        db_session: AsyncSession,
        model_path: str,
        hours: Annotated[float, Parameter(gt=0, le=24 * 3650)] = 24,
        history: Annotated[int, Parameter(ge=0, le=1000, description="events to return")] = 100,
    ) -> ModelDetail | ModelConfigSnippet:
        runtime = get_runtime(request)
        model_id, action = _split(runtime, model_path, ("config",))
        if action == "config":
            source = runtime.config.models[model_id].source
            text = yaml.safe_dump({model_id: source}, sort_keys=False, allow_unicode=True, width=120)
            return ModelConfigSnippet(model=model_id, yaml=text)
        since = _since(hours)
        stats = await model_stats(db_session, since, model_id)
        status = next(s for s in runtime.engine.status() if s["model"] == model_id)
        rows = (
            await db_session.scalars(
                select(ModelEvent).where(ModelEvent.model == model_id).order_by(ModelEvent.id.desc()).limit(history)
            )
        ).all()
        events = [ModelEventRow(r.at, r.state, r.previous, r.load_seconds, r.reason) for r in rows]
        return ModelDetail(model=summarize(runtime, status, stats.get(model_id)), since=since, history=events)

    @post(
        "/{model_path:path}",
        summary="`/api/models/{id}/load` (waits until ready) or `/api/models/{id}/unload`",
        status_code=200,
    )
    async def model_action(self, request: Request, model_path: str) -> ModelAction:
        runtime = get_runtime(request)
        model_id, action = _split(runtime, model_path, ("load", "unload"))
        if action is None:
            raise NotFoundException("POST /api/models/{id}/load or /api/models/{id}/unload")
        if action == "unload":
            await runtime.engine.unload([model_id], reason="admin api")
            return ModelAction(model=model_id, action="unload", state=runtime.engine.state_of(model_id))
        return await admin_load(runtime, model_id)


async def admin_load(runtime: Runtime, model_id: str) -> ModelAction:
    """Start `model_id` (if needed) as an admin; it then outranks API-loaded models under the max-loaded cap."""
    engine = runtime.engine
    started = time.perf_counter()
    try:
        lease = await engine.acquire(model_id, origin="admin")
    except UpstreamStartError as exc:
        raise HTTPException(status_code=502, detail=str(exc)) from None
    except ConcurrencyLimitError as exc:
        raise ClientException(str(exc), status_code=429) from None
    except (GatewayShuttingDown, ModelUnloadedError, CapacityError) as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from None
    engine.release(lease)
    return ModelAction(
        model=model_id, action="load", state=engine.state_of(model_id), origin=engine.started_by(model_id),
        seconds=round(time.perf_counter() - started, 3),
    )  # fmt: skip
