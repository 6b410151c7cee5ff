"""`/api/credentials`: the credential vault. Secrets are write-only: no response ever contains one.

Values are encrypted with AES-256-GCM under ``SWITCHYARD_SECRET_KEY`` (``core.vault``) before they reach the
database. Without a usable secret setting, creating a credential or changing its value answers 503 naming the
setting, and nothing is stored. A new value is also refused (409) while other stored credentials were encrypted
under a different secret, so the vault never holds values under two keys at once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.access_store import bindings_from_json
from api.admin.access_common import SLUG_PATTERN, commit_and_apply, conflict, vault_unavailable
from api.admin.deps import get_runtime
from api.db.access import Credential, McpRelay, PolicyRuleRow
from core.vault import Vault, VaultDecryptError, VaultKeyError

Slug = Annotated[str, msgspec.Meta(pattern=SLUG_PATTERN)]
SecretValue = Annotated[
    str, msgspec.Meta(min_length=1, max_length=16 * 1024, description="write-only: stored encrypted, never returned")
]


class CredentialCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A new credential. Reference it from a rule or relay binding by ``slug``, or have clients send the
    placeholder ``{{switchyard:credential:<slug>}}`` where a placeholder binding allows it."""

    slug: Slug
    secret: SecretValue
    name: Annotated[str, msgspec.Meta(max_length=255)] = ""
    description: Annotated[str, msgspec.Meta(max_length=4000)] = ""


class CredentialPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Fields to change; send ``secret`` to replace the stored value (it is never shown)."""

    secret: SecretValue | msgspec.UnsetType = msgspec.UNSET
    name: Annotated[str, msgspec.Meta(max_length=255)] | msgspec.UnsetType = msgspec.UNSET
    description: Annotated[str, msgspec.Meta(max_length=4000)] | msgspec.UnsetType = msgspec.UNSET


class CredentialReferences(msgspec.Struct):
    rules: list[str] = []  # policy rule ids
    relays: list[str] = []  # MCP relay slugs


class CredentialOut(msgspec.Struct):
    """A credential without its value. ``problem`` says why it cannot be used now (no secret setting, or it was
    encrypted under another ``SWITCHYARD_SECRET_KEY``), null when it can."""

    slug: str
    name: str
    description: str
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None
    references: CredentialReferences
    problem: str | None = None


async def references_to(session: AsyncSession) -> dict[str, CredentialReferences]:
    """Which rules and relays bind each credential slug."""
    out: dict[str, CredentialReferences] = {}
    for rule_id, bindings in (await session.execute(select(PolicyRuleRow.id, PolicyRuleRow.bindings))).all():
        for slug in dict.fromkeys(b.get("credential") for b in bindings or () if isinstance(b, dict)):
            if slug:
                out.setdefault(slug, CredentialReferences(rules=[], relays=[])).rules.append(rule_id)
    for relay_slug, bindings in (await session.execute(select(McpRelay.slug, McpRelay.bindings))).all():
        for slug in dict.fromkeys(b.credential for b in bindings_from_json(bindings)):
            out.setdefault(slug, CredentialReferences(rules=[], relays=[])).relays.append(relay_slug)
    return out


def _problem(request: Request, row: Credential) -> str | None:
    access = get_runtime(request).access
    try:
        access.vault.decrypt(row.ciphertext, row.slug)  # the value is dropped at once: only the outcome is shown
    except (VaultKeyError, VaultDecryptError) as exc:
        return str(exc)
    return None


def _out(request: Request, row: Credential, references: dict[str, CredentialReferences]) -> CredentialOut:
    pending = get_runtime(request).access.pending_credential_use(row.slug)
    last_used = max(filter(None, (row.last_used_at, pending)), default=None)
    return CredentialOut(
        slug=row.slug, name=row.name or "", description=row.description or "", created_at=row.created_at,
        updated_at=row.updated_at, last_used_at=last_used,
        references=references.get(row.slug, CredentialReferences(rules=[], relays=[])), problem=_problem(request, row),
    )  # fmt: skip


async def _encrypt(request: Request, session: AsyncSession, slug: str, secret: str) -> bytes:
    """Encrypt `secret` for `slug`, after checking that the vault works and holds no value under another key."""
    try:
        vault: Vault = get_runtime(request).access.vault
    except VaultKeyError as exc:
        raise vault_unavailable(str(exc)) from None
    others = (
        await session.execute(select(Credential.slug, Credential.ciphertext).where(Credential.slug != slug))
    ).all()
    for other_slug, blob in others:
        try:
            vault.decrypt(blob, other_slug)
        except VaultDecryptError as exc:
            raise conflict(
                f"refusing to store a credential while another cannot be read with the current "
                f"SWITCHYARD_SECRET_KEY: {exc}",
                {"credential": other_slug},
            ) from None
    return vault.encrypt(secret, slug)


class CredentialController(Controller):
    path = "/api/credentials"
    tags = ["credentials"]

    @post("/", summary="Store a credential (encrypted; its value is never returned)", status_code=201)
    async def create_credential(
        self, request: Request, db_session: AsyncSession, data: CredentialCreate
    ) -> CredentialOut:
        if await db_session.scalar(select(Credential.id).where(Credential.slug == data.slug)) is not None:
            raise conflict(f"a credential with slug {data.slug!r} already exists; PATCH it to change its value")
        now = datetime.now(UTC)
        row = Credential(
            slug=data.slug, name=data.name.strip(), description=data.description,
            ciphertext=await _encrypt(request, db_session, data.slug, data.secret), created_at=now, updated_at=now,
        )  # fmt: skip
        db_session.add(row)
        await commit_and_apply(request, db_session)
        return _out(request, row, {})

    @get("/", summary="Every credential (never its value) and what references it")
    async def list_credentials(self, request: Request, db_session: AsyncSession) -> list[CredentialOut]:
        rows = (await db_session.scalars(select(Credential).order_by(Credential.slug))).all()
        references = await references_to(db_session)
        return [_out(request, row, references) for row in rows]

    @get("/{slug:str}", summary="One credential (never its value)")
    async def get_credential(self, request: Request, db_session: AsyncSession, slug: str) -> CredentialOut:
        return _out(request, await _row(db_session, slug), await references_to(db_session))

    @patch("/{slug:str}", summary="Rename, describe, or replace the value of a credential")
    async def update_credential(
        self, request: Request, db_session: AsyncSession, slug: str, data: CredentialPatch
    ) -> CredentialOut:
        row = await _row(db_session, slug)
        if data.secret is not msgspec.UNSET:
            row.ciphertext = await _encrypt(request, db_session, slug, data.secret)
        if data.name is not msgspec.UNSET:
            row.name = data.name.strip()
        if data.description is not msgspec.UNSET:
            row.description = data.description
        row.updated_at = datetime.now(UTC)
        await commit_and_apply(request, db_session)
        return _out(request, row, await references_to(db_session))

    @delete(
        "/{slug:str}",
        summary="Delete a credential; one that rules or relays still bind needs ?confirm=true (409 otherwise)",
        status_code=204,
    )
    async def delete_credential(
        self,
        request: Request,
        db_session: AsyncSession,
        slug: str,
        confirm: Annotated[bool, Parameter(description="delete even though rules or relays bind it")] = False,
    ) -> None:
        row = await _row(db_session, slug)
        references = (await references_to(db_session)).get(slug)
        if references is not None and not confirm:
            raise conflict(
                f"credential {slug!r} is still used by {_describe(references)}; "
                f"requests through them will fail once it is gone. Repeat with ?confirm=true to delete it anyway",
                msgspec.to_builtins(references),
            )
        await db_session.delete(row)
        await commit_and_apply(request, db_session)


def _describe(references: CredentialReferences) -> str:
    parts = []
    if references.rules:
        parts.append(f"policy rule(s) {', '.join(references.rules)}")
    if references.relays:
        parts.append(f"MCP relay(s) {', '.join(references.relays)}")
    return " and ".join(parts)


async def _row(session: AsyncSession, slug: str) -> Credential:
    row = await session.scalar(select(Credential).where(Credential.slug == slug))
    if row is None:
        raise NotFoundException(f"no credential with slug {slug!r}")
    return row
