"""`/api/keys`: create (the secret is shown once), list, inspect, edit, revoke, delete, and per-key usage."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.access_store import ADMIN_TOKEN_KEY_ID, key_record
from api.admin.access_common import commit_and_apply, conflict, invalid
from api.admin.deps import get_runtime
from api.db.access import ApiKey
from api.db.models import RequestLog
from core.keys import ApiKeyRecord, config_key_record, generate_key, hash_key

Scope = Literal["inference", "admin"]
Pattern = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
Limit = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
Prompt = Annotated[str, msgspec.Meta(max_length=100_000)]


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A new key. Limits of 0 or null mean unlimited; an empty model allow-list allows every model; an empty
    relay allow-list allows no MCP relay (``["*"]`` allows all)."""

    name: Name
    rpm_limit: Limit | None = None
    tpm_limit: Limit | None = None
    allowed_models: list[Pattern] = []
    allowed_relays: list[Pattern] = []
    system_prompt: Prompt | None = None
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1)] = msgspec.field(default_factory=lambda: ["inference"])
    expires_at: datetime | None = None


class KeyPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Fields to change; absent fields stay as they are. Set ``expires_at`` to now to expire a key."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    rpm_limit: Limit | None | msgspec.UnsetType = msgspec.UNSET
    tpm_limit: Limit | None | msgspec.UnsetType = msgspec.UNSET
    allowed_models: list[Pattern] | msgspec.UnsetType = msgspec.UNSET
    allowed_relays: list[Pattern] | msgspec.UnsetType = msgspec.UNSET
    system_prompt: Prompt | None | msgspec.UnsetType = msgspec.UNSET
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1)] | msgspec.UnsetType = msgspec.UNSET
    expires_at: datetime | None | msgspec.UnsetType = msgspec.UNSET


class KeyOut(msgspec.Struct):
    """A key as the admin API shows it: never the secret, only its display prefix.

    ``source`` is ``database`` (managed here), ``config`` (the config file's ``apiKeys``) or ``settings``
    (``SWITCHYARD_ADMIN_TOKEN``); only database keys can be edited.
    """

    id: str
    name: str
    prefix: str
    source: Literal["database", "config", "settings"]
    state: Literal["active", "revoked", "expired"]
    scopes: list[str]
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    allowed_models: list[str] = []
    allowed_relays: list[str] = []
    system_prompt: str | None = None
    created_at: datetime | None = None
    revoked_at: datetime | None = None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None


class KeyCreated(KeyOut, kw_only=True):
    """The created key, with its secret: shown this once, never again."""

    secret: str


class ModelUsage(msgspec.Struct):
    model: str | None
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float


class KeyUsage(msgspec.Struct):
    """Totals over the request log for one key (``since``/``until`` bound it), and the same by model."""

    key_id: str
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float
    by_model: list[ModelUsage]
    since: datetime | None = None
    until: datetime | None = None


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _state(record: ApiKeyRecord) -> Literal["active", "revoked", "expired"]:
    if record.revoked:
        return "revoked"
    if record.expired(datetime.now(UTC)):
        return "expired"
    return "active"


def _out(row: ApiKey, request: Request) -> KeyOut:
    record = key_record(row)
    pending = get_runtime(request).access.pending_key_use(row.id)
    last_used = max(filter(None, (_utc(row.last_used_at), pending)), default=None)
    return KeyOut(
        id=row.id, name=row.name, prefix=row.prefix, source="database", state=_state(record),
        scopes=sorted(record.scopes), rpm_limit=row.rpm_limit, tpm_limit=row.tpm_limit,
        allowed_models=list(row.allowed_models or ()), allowed_relays=list(row.allowed_relays or ()),
        system_prompt=row.system_prompt, created_at=row.created_at, revoked_at=row.revoked_at,
        expires_at=row.expires_at, last_used_at=last_used,
    )  # fmt: skip


def _out_external(record: ApiKeyRecord, request: Request) -> KeyOut:
    return KeyOut(
        id=record.id, name=record.name, prefix=record.prefix,
        source="settings" if record.id == ADMIN_TOKEN_KEY_ID else "config", state="active",
        scopes=sorted(record.scopes), last_used_at=get_runtime(request).access.pending_key_use(record.id),
    )  # fmt: skip


def _check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise invalid("a key needs a name", [("name", "must not be blank")])
    return name


def _limit(value: int | None) -> int | None:
    return value or None  # 0 means unlimited, stored as null


class KeyController(Controller):
    path = "/api/keys"
    tags = ["keys"]

    @post("/", summary="Create an API key; the response is the only time its secret is shown", status_code=201)
    async def create_key(self, request: Request, db_session: AsyncSession, data: KeyCreate) -> KeyCreated:
        secret, prefix = generate_key()
        row = ApiKey(
            id=f"key_{secrets.token_hex(6)}", name=_check_name(data.name), prefix=prefix, key_hash=hash_key(secret),
            created_at=datetime.now(UTC), expires_at=_utc(data.expires_at), rpm_limit=_limit(data.rpm_limit),
            tpm_limit=_limit(data.tpm_limit), allowed_models=list(data.allowed_models),
            allowed_relays=list(data.allowed_relays), system_prompt=data.system_prompt or None,
            scopes=sorted(set(data.scopes)),
        )  # fmt: skip
        db_session.add(row)
        await commit_and_apply(request, db_session)
        return KeyCreated(**msgspec.structs.asdict(_out(row, request)), secret=secret)

    @get("/", summary="List keys: managed keys first (newest first), then the config's and the bootstrap token")
    async def list_keys(self, request: Request, db_session: AsyncSession) -> list[KeyOut]:
        rows = (await db_session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id))).all()
        out = [_out(row, request) for row in rows]
        ids = {row.id for row in rows}
        table = get_runtime(request).access.key_table
        external = [table.get(key_id) for key_id in _external_ids(request) if key_id not in ids]
        out.extend(_out_external(record, request) for record in external if record is not None)
        return out

    @get("/{key_id:str}", summary="One key")
    async def get_key(self, request: Request, db_session: AsyncSession, key_id: str) -> KeyOut:
        row = await db_session.get(ApiKey, key_id)
        if row is not None:
            return _out(row, request)
        record = get_runtime(request).access.key_table.get(key_id)
        if record is None:
            raise NotFoundException(f"no API key with id {key_id!r}")
        return _out_external(record, request)

    @patch("/{key_id:str}", summary="Change a key's name, limits, allow-lists, system prompt, scopes or expiry")
    async def update_key(self, request: Request, db_session: AsyncSession, key_id: str, data: KeyPatch) -> KeyOut:
        row = await self._managed(request, db_session, key_id)
        if data.name is not msgspec.UNSET:
            row.name = _check_name(data.name)
        if data.rpm_limit is not msgspec.UNSET:
            row.rpm_limit = _limit(data.rpm_limit)
        if data.tpm_limit is not msgspec.UNSET:
            row.tpm_limit = _limit(data.tpm_limit)
        if data.allowed_models is not msgspec.UNSET:
            row.allowed_models = list(data.allowed_models)
        if data.allowed_relays is not msgspec.UNSET:
            row.allowed_relays = list(data.allowed_relays)
        if data.system_prompt is not msgspec.UNSET:
            row.system_prompt = data.system_prompt or None
        if data.scopes is not msgspec.UNSET:
            row.scopes = sorted(set(data.scopes))
        if data.expires_at is not msgspec.UNSET:
            row.expires_at = _utc(data.expires_at)
        await commit_and_apply(request, db_session)
        return _out(row, request)

    @post("/{key_id:str}/revoke", summary="Revoke a key: it stops working on the next request", status_code=200)
    async def revoke_key(self, request: Request, db_session: AsyncSession, key_id: str) -> KeyOut:
        row = await self._managed(request, db_session, key_id)
        if row.revoked_at is None:
            row.revoked_at = datetime.now(UTC)
            await commit_and_apply(request, db_session)
        return _out(row, request)

    @delete("/{key_id:str}", summary="Delete a key (its request log rows keep its id)", status_code=204)
    async def delete_key(self, request: Request, db_session: AsyncSession, key_id: str) -> None:
        row = await self._managed(request, db_session, key_id)
        await db_session.delete(row)
        await commit_and_apply(request, db_session)

    @get("/{key_id:str}/usage", summary="Requests, tokens, cost and errors of one key, by model")
    async def key_usage(
        self,
        request: Request,
        db_session: AsyncSession,
        key_id: str,
        since: Annotated[datetime | None, Parameter(description="only requests at or after this time")] = None,
        until: Annotated[datetime | None, Parameter(description="only requests before this time")] = None,
    ) -> KeyUsage:
        if await db_session.get(ApiKey, key_id) is None and get_runtime(request).access.key_table.get(key_id) is None:
            # a deleted key's rows are still in the log: answer for them rather than 404 when there are any
            exists = await db_session.scalar(select(RequestLog.id).where(RequestLog.api_key_id == key_id).limit(1))
            if exists is None:
                raise NotFoundException(f"no API key with id {key_id!r}")
        since, until = _utc(since), _utc(until)
        query = (
            select(
                RequestLog.model,
                func.count(),
                func.coalesce(func.sum(case((RequestLog.status_code >= 400, 1), else_=0)), 0),
                func.coalesce(func.sum(RequestLog.prompt_tokens), 0),
                func.coalesce(func.sum(RequestLog.completion_tokens), 0),
                func.coalesce(func.sum(RequestLog.cost_usd), 0.0),
            )
            .where(RequestLog.api_key_id == key_id)
            .group_by(RequestLog.model)
            .order_by(func.count().desc())
        )
        if since is not None:
            query = query.where(RequestLog.created_at >= since)
        if until is not None:
            query = query.where(RequestLog.created_at < until)
        by_model = [
            ModelUsage(
                model=model,
                requests=int(count),
                errors=int(errors),
                prompt_tokens=int(prompt),
                completion_tokens=int(completion),
                total_tokens=int(prompt) + int(completion),
                cost_usd=float(cost),
            )
            for model, count, errors, prompt, completion, cost in (await db_session.execute(query)).all()
        ]
        return KeyUsage(
            key_id=key_id,
            requests=sum(m.requests for m in by_model),
            errors=sum(m.errors for m in by_model),
            prompt_tokens=sum(m.prompt_tokens for m in by_model),
            completion_tokens=sum(m.completion_tokens for m in by_model),
            total_tokens=sum(m.total_tokens for m in by_model),
            cost_usd=sum((m.cost_usd for m in by_model), 0.0),
            by_model=by_model,
            since=since,
            until=until,
        )

    async def _managed(self, request: Request, session: AsyncSession, key_id: str) -> ApiKey:
        row = await session.get(ApiKey, key_id)
        if row is not None:
            return row
        record = get_runtime(request).access.key_table.get(key_id)
        if record is None:
            raise NotFoundException(f"no API key with id {key_id!r}")
        where = "SWITCHYARD_ADMIN_TOKEN" if record.id == ADMIN_TOKEN_KEY_ID else "the config file's apiKeys"
        raise conflict(f"key {key_id!r} comes from {where}; change it there")


def _external_ids(request: Request) -> list[str]:
    runtime = get_runtime(request)
    ids = [config_key_record(secret, index).id for index, secret in enumerate(runtime.config.api_keys)]
    if runtime.settings.admin_token:
        ids.append(ADMIN_TOKEN_KEY_ID)
    return ids
