"""`/api/policies`: the ordered routing policy rules (``core.policy``), with their hit counts."""

from __future__ import annotations

import dataclasses
import secrets
from datetime import UTC, datetime
from typing import Annotated

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.exceptions import NotFoundException
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.access_store import rule_columns, rule_from_row
from api.admin.access_common import commit_and_apply, conflict, invalid
from api.admin.deps import get_runtime
from api.db.access import Credential, PolicyRuleRow
from core.policy import ActionKind, PolicyRule, RouteTarget, RuleMatch, validate_rule
from core.vault import CredentialBinding

RuleId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
Status = Annotated[int, msgspec.Meta(ge=100, le=599)]
Size = Annotated[int, msgspec.Meta(ge=0)]


class RuleCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A new rule. ``position`` is where it goes in the list (0 = first; default: last).

    ``match`` conditions are globs or ``re:`` regular expressions; ``action`` is ``continue``, ``rewrite``
    (needs ``rewrite_model``), ``reject`` (``reject_status``, ``reject_message``) or ``route`` (needs ``target``).
    """

    id: RuleId | None = None
    name: Annotated[str, msgspec.Meta(max_length=255)] = ""
    position: Size | None = None
    enabled: bool = True
    match: RuleMatch = msgspec.field(default_factory=RuleMatch)
    action: ActionKind = "continue"
    rewrite_model: str = ""
    reject_status: Status = 403
    reject_message: str = "request rejected by policy"
    target: RouteTarget | None = None
    bindings: list[CredentialBinding] = []
    max_body_bytes: Size | None = None


class RulePatch(msgspec.Struct, forbid_unknown_fields=True):
    """Fields to change; absent fields stay as they are (use /reorder to move rules)."""

    name: Annotated[str, msgspec.Meta(max_length=255)] | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET
    match: RuleMatch | msgspec.UnsetType = msgspec.UNSET
    action: ActionKind | msgspec.UnsetType = msgspec.UNSET
    rewrite_model: str | msgspec.UnsetType = msgspec.UNSET
    reject_status: Status | msgspec.UnsetType = msgspec.UNSET
    reject_message: str | msgspec.UnsetType = msgspec.UNSET
    target: RouteTarget | None | msgspec.UnsetType = msgspec.UNSET
    bindings: list[CredentialBinding] | msgspec.UnsetType = msgspec.UNSET
    max_body_bytes: Size | None | msgspec.UnsetType = msgspec.UNSET


class RuleOrder(msgspec.Struct, forbid_unknown_fields=True):
    """Every rule id, in the new order."""

    ids: list[str]


class RuleOut(msgspec.Struct):
    id: str
    position: int
    enabled: bool
    name: str
    match: RuleMatch
    action: str
    rewrite_model: str
    reject_status: int
    reject_message: str
    target: RouteTarget | None
    bindings: list[CredentialBinding]
    max_body_bytes: int | None
    hits: int
    created_at: datetime
    updated_at: datetime


def _out(row: PolicyRuleRow, pending: dict[str, int]) -> RuleOut:
    rule = rule_from_row(row)
    return RuleOut(
        id=rule.id, position=rule.position, enabled=rule.enabled, name=rule.name, match=rule.match,
        action=rule.action, rewrite_model=rule.rewrite_model, reject_status=rule.reject_status,
        reject_message=rule.reject_message, target=rule.target, bindings=list(rule.bindings),
        max_body_bytes=rule.max_body_bytes, hits=(row.hits or 0) + pending.get(row.id, 0),
        created_at=row.created_at, updated_at=row.updated_at,
    )  # fmt: skip


async def _validated(session: AsyncSession, rule: PolicyRule) -> PolicyRule:
    """`rule` if it compiles and every credential it binds exists; else a 400 listing every problem."""
    problems = [(problem.field, problem.message) for problem in validate_rule(rule)]
    slugs = {binding.credential for binding in rule.bindings}
    if slugs:
        known = set((await session.scalars(select(Credential.slug).where(Credential.slug.in_(slugs)))).all())
        for index, binding in enumerate(rule.bindings):
            if binding.credential not in known:
                problems.append((f"bindings[{index}].credential", f"no credential {binding.credential!r}"))
    if problems:
        raise invalid(f"invalid policy rule {rule.id!r}", problems)
    return rule


async def _ordered(session: AsyncSession) -> list[PolicyRuleRow]:
    return list((await session.scalars(select(PolicyRuleRow).order_by(PolicyRuleRow.position, PolicyRuleRow.id))).all())


def _renumber(rows: list[PolicyRuleRow]) -> None:
    for position, row in enumerate(rows):
        if row.position != position:
            row.position = position


class PolicyController(Controller):
    path = "/api/policies"
    tags = ["policies"]

    @get("/", summary="Every rule in evaluation order, with hit counts")
    async def list_rules(self, request: Request, db_session: AsyncSession) -> list[RuleOut]:
        pending = get_runtime(request).access.pending_hits()
        return [_out(row, pending) for row in await _ordered(db_session)]

    @post("/", summary="Add a rule (at `position`, default last)", status_code=201)
    async def create_rule(self, request: Request, db_session: AsyncSession, data: RuleCreate) -> RuleOut:
        rule_id = data.id or f"rule_{secrets.token_hex(6)}"
        if await db_session.get(PolicyRuleRow, rule_id) is not None:
            raise conflict(f"a rule with id {rule_id!r} already exists")
        rule = await _validated(
            db_session,
            PolicyRule(
                id=rule_id,
                position=0,
                enabled=data.enabled,
                name=data.name.strip(),
                match=data.match,
                action=data.action,
                rewrite_model=data.rewrite_model,
                reject_status=data.reject_status,
                reject_message=data.reject_message,
                target=data.target,
                bindings=tuple(data.bindings),
                max_body_bytes=data.max_body_bytes,
            ),
        )
        rows = await _ordered(db_session)
        now = datetime.now(UTC)
        row = PolicyRuleRow(**rule_columns(rule), hits=0, created_at=now, updated_at=now)
        index = len(rows) if data.position is None else min(data.position, len(rows))
        rows.insert(index, row)
        _renumber(rows)
        db_session.add(row)
        await commit_and_apply(request, db_session)
        return _out(row, {})

    @post("/reorder", summary="Put the rules in a new order: send every rule id, first to last", status_code=200)
    async def reorder_rules(self, request: Request, db_session: AsyncSession, data: RuleOrder) -> list[RuleOut]:
        rows = {row.id: row for row in await _ordered(db_session)}
        problems = []
        duplicates = sorted({rule_id for rule_id in data.ids if data.ids.count(rule_id) > 1})
        if duplicates:
            problems.append(("ids", f"listed more than once: {', '.join(duplicates)}"))
        unknown = [rule_id for rule_id in data.ids if rule_id not in rows]
        if unknown:
            problems.append(("ids", f"no such rule: {', '.join(unknown)}"))
        missing = [rule_id for rule_id in rows if rule_id not in data.ids]
        if missing:
            problems.append(("ids", f"missing (send every rule id): {', '.join(missing)}"))
        if problems:
            raise invalid("the new order must list every rule id exactly once", problems)
        _renumber([rows[rule_id] for rule_id in data.ids])
        await commit_and_apply(request, db_session)
        pending = get_runtime(request).access.pending_hits()
        return [_out(row, pending) for row in await _ordered(db_session)]

    @get("/{rule_id:str}", summary="One rule")
    async def get_rule(self, request: Request, db_session: AsyncSession, rule_id: str) -> RuleOut:
        return _out(await _row(db_session, rule_id), get_runtime(request).access.pending_hits())

    @patch("/{rule_id:str}", summary="Change a rule")
    async def update_rule(self, request: Request, db_session: AsyncSession, rule_id: str, data: RulePatch) -> RuleOut:
        row = await _row(db_session, rule_id)
        current = rule_from_row(row)
        changes = {name: value for name, value in msgspec.structs.asdict(data).items() if value is not msgspec.UNSET}
        if "bindings" in changes:
            changes["bindings"] = tuple(changes["bindings"])
        if "name" in changes:
            changes["name"] = changes["name"].strip()
        rule = await _validated(db_session, dataclasses.replace(current, **changes))
        for column, value in rule_columns(rule).items():
            setattr(row, column, value)
        row.updated_at = datetime.now(UTC)
        await commit_and_apply(request, db_session)
        return _out(row, get_runtime(request).access.pending_hits())

    @delete("/{rule_id:str}", summary="Delete a rule", status_code=204)
    async def delete_rule(self, request: Request, db_session: AsyncSession, rule_id: str) -> None:
        row = await _row(db_session, rule_id)
        await db_session.delete(row)
        await db_session.flush()
        _renumber(await _ordered(db_session))
        await commit_and_apply(request, db_session)


async def _row(session: AsyncSession, rule_id: str) -> PolicyRuleRow:
    row = await session.get(PolicyRuleRow, rule_id)
    if row is None:
        raise NotFoundException(f"no policy rule with id {rule_id!r}")
    return row
