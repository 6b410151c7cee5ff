"""`/api/sampling-overrides`: sampling parameters forced on every request for a model, editable live."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Request, delete, get, put
from litestar.exceptions import NotFoundException
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.admin.access_common import commit_and_apply, invalid
from api.db.access import SamplingOverrideRow


class SamplingValues(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Values forced on requests for the model; null (or absent) leaves the client's value alone.

    OpenAI-shaped requests get every set field; Anthropic Messages requests only ``temperature``, ``top_p`` and
    ``top_k`` (the others are not part of that API).
    """

    temperature: Annotated[float, msgspec.Meta(ge=0, le=5)] | None = None
    top_k: Annotated[int, msgspec.Meta(ge=0)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    presence_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    repeat_penalty: Annotated[float, msgspec.Meta(ge=0, le=10)] | None = None


class ModelOverrides(msgspec.Struct):
    model: str
    values: SamplingValues


def _model(path_model: str) -> str:
    model = path_model.lstrip("/")
    if not model:
        raise NotFoundException("give a model id: /api/sampling-overrides/{model}")
    return model


async def _row(session: AsyncSession, model: str) -> SamplingOverrideRow | None:
    return await session.scalar(select(SamplingOverrideRow).where(SamplingOverrideRow.model == model))


class SamplingOverrideController(Controller):
    path = "/api/sampling-overrides"
    tags = ["sampling-overrides"]

    @get("/", summary="Every model with sampling overrides")
    async def list_overrides(self, db_session: AsyncSession) -> list[ModelOverrides]:
        rows = (await db_session.scalars(select(SamplingOverrideRow).order_by(SamplingOverrideRow.model))).all()
        return [ModelOverrides(row.model, msgspec.convert(row.values, SamplingValues)) for row in rows]

    @get("/{model:path}", summary="The overrides of one model (ids may contain slashes)")
    async def get_overrides(self, db_session: AsyncSession, model: str) -> ModelOverrides:
        model = _model(model)
        row = await _row(db_session, model)
        if row is None:
            raise NotFoundException(f"model {model!r} has no sampling overrides")
        return ModelOverrides(model, msgspec.convert(row.values, SamplingValues))

    @put("/{model:path}", summary="Set the overrides of one model (replaces them; applies to the next request)")
    async def put_overrides(
        self, request: Request, db_session: AsyncSession, model: str, data: SamplingValues
    ) -> ModelOverrides:
        model = _model(model)
        values = msgspec.to_builtins(data)
        if not values:
            raise invalid("set at least one value, or DELETE the model's overrides", [("data", "no value is set")])
        row = await _row(db_session, model)
        if row is None:
            db_session.add(SamplingOverrideRow(model=model, values=values))
        else:
            row.values = values
        await commit_and_apply(request, db_session)
        return ModelOverrides(model, data)

    @delete("/{model:path}", summary="Remove the overrides of one model", status_code=204)
    async def delete_overrides(self, request: Request, db_session: AsyncSession, model: str) -> None:
        model = _model(model)
        row = await _row(db_session, model)
        if row is None:
            raise NotFoundException(f"model {model!r} has no sampling overrides")
        await db_session.delete(row)
        await commit_and_apply(request, db_session)
