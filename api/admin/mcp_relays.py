"""`/api/mcp-relays`: MCP Streamable HTTP servers reachable through ``/mcp-relays/{slug}`` with injected credentials."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.exceptions import NotFoundException
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.access_store import bindings_from_json
from api.admin.access_common import SLUG_PATTERN, commit_and_apply, conflict, invalid
from api.db.access import Credential, McpRelay
from core.keys import RELAY_KEY_HEADER
from core.vault import CredentialBinding

Slug = Annotated[str, msgspec.Meta(pattern=SLUG_PATTERN)]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
#: what the snippet puts where the client's key goes: Claude Code expands ${VAR} in .mcp.json headers
KEY_PLACEHOLDER = "${SWITCHYARD_API_KEY}"
RELAY_PREFIX = "/mcp-relays/"


class RelayCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A relay: ``/mcp-relays/{slug}`` (and its subpaths) forwards to ``upstream_url`` with ``bindings`` applied."""

    slug: Slug
    upstream_url: Url
    name: Annotated[str, msgspec.Meta(max_length=255)] = ""
    bindings: list[CredentialBinding] = []
    enabled: bool = True


class RelayPatch(msgspec.Struct, forbid_unknown_fields=True):
    upstream_url: Url | msgspec.UnsetType = msgspec.UNSET
    name: Annotated[str, msgspec.Meta(max_length=255)] | msgspec.UnsetType = msgspec.UNSET
    bindings: list[CredentialBinding] | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


class RelayOut(msgspec.Struct):
    slug: str
    name: str
    upstream_url: str
    bindings: list[CredentialBinding]
    enabled: bool
    created_at: datetime
    path: str  # where clients connect, on this gateway


def _out(row: McpRelay) -> RelayOut:
    return RelayOut(
        slug=row.slug, name=row.name or "", upstream_url=row.upstream_url, bindings=list(bindings_from_json(row.bindings)),
        enabled=row.enabled, created_at=row.created_at, path=RELAY_PREFIX + row.slug,
    )  # fmt: skip


async def _validate(session: AsyncSession, upstream_url: str, bindings: list[CredentialBinding]) -> None:
    problems: list[tuple[str, str]] = []
    try:
        url = httpx.URL(upstream_url)
    except (httpx.InvalidURL, ValueError) as exc:
        problems.append(("upstream_url", f"not a URL: {exc}"))
    else:
        if url.scheme not in ("http", "https") or not url.host:
            problems.append(("upstream_url", f"must be an http:// or https:// URL with a host, got {upstream_url!r}"))
        elif url.userinfo:
            problems.append(
                ("upstream_url", "must not carry credentials: store them in /api/credentials and bind them")
            )
    for index, binding in enumerate(bindings):
        for message in binding.problems():
            problems.append((f"bindings[{index}]", message))
    slugs = {binding.credential for binding in bindings}
    if slugs:
        known = set((await session.scalars(select(Credential.slug).where(Credential.slug.in_(slugs)))).all())
        for index, binding in enumerate(bindings):
            if binding.credential not in known:
                problems.append((f"bindings[{index}].credential", f"no credential {binding.credential!r}"))
    if problems:
        raise invalid("invalid MCP relay", problems)


def claude_code_snippet(base_url: str, slug: str) -> dict[str, Any]:
    """The ``mcpServers`` entry for Claude Code's ``.mcp.json``; the key is read from ``$SWITCHYARD_API_KEY``."""
    return {
        "mcpServers": {
            slug: {
                "type": "http",
                "url": base_url.rstrip("/") + RELAY_PREFIX + slug,
                "headers": {RELAY_KEY_HEADER: KEY_PLACEHOLDER},
            }
        }
    }


class McpRelayController(Controller):
    path = "/api/mcp-relays"
    tags = ["mcp-relays"]

    @post("/", summary="Add an MCP relay", status_code=201)
    async def create_relay(self, request: Request, db_session: AsyncSession, data: RelayCreate) -> RelayOut:
        if await db_session.scalar(select(McpRelay.id).where(McpRelay.slug == data.slug)) is not None:
            raise conflict(f"an MCP relay with slug {data.slug!r} already exists")
        await _validate(db_session, data.upstream_url, data.bindings)
        row = McpRelay(
            slug=data.slug, name=data.name.strip(), upstream_url=data.upstream_url,
            bindings=msgspec.to_builtins(data.bindings), enabled=data.enabled, created_at=datetime.now(UTC),
        )  # fmt: skip
        db_session.add(row)
        await commit_and_apply(request, db_session)
        return _out(row)

    @get("/", summary="Every MCP relay")
    async def list_relays(self, db_session: AsyncSession) -> list[RelayOut]:
        return [_out(row) for row in (await db_session.scalars(select(McpRelay).order_by(McpRelay.slug))).all()]

    @get("/{slug:str}", summary="One MCP relay")
    async def get_relay(self, db_session: AsyncSession, slug: str) -> RelayOut:
        return _out(await _row(db_session, slug))

    @get(
        "/{slug:str}/snippet",
        summary="A Claude Code `mcpServers` snippet for this relay (put your key in $SWITCHYARD_API_KEY)",
        description=(
            "Paste into `.mcp.json`, or run `claude mcp add --transport http <slug> <url> "
            "--header 'x-switchyard-api-key: <key>'`. The key must list this relay in its `allowed_relays`."
        ),
    )
    async def relay_snippet(self, request: Request, db_session: AsyncSession, slug: str) -> dict[str, Any]:
        row = await _row(db_session, slug)
        return claude_code_snippet(str(request.base_url), row.slug)

    @patch("/{slug:str}", summary="Change an MCP relay")
    async def update_relay(self, request: Request, db_session: AsyncSession, slug: str, data: RelayPatch) -> RelayOut:
        row = await _row(db_session, slug)
        upstream_url = row.upstream_url if data.upstream_url is msgspec.UNSET else data.upstream_url
        bindings = list(bindings_from_json(row.bindings)) if data.bindings is msgspec.UNSET else data.bindings
        await _validate(db_session, upstream_url, bindings)
        row.upstream_url = upstream_url
        row.bindings = msgspec.to_builtins(bindings)
        if data.name is not msgspec.UNSET:
            row.name = data.name.strip()
        if data.enabled is not msgspec.UNSET:
            row.enabled = data.enabled
        await commit_and_apply(request, db_session)
        return _out(row)

    @delete("/{slug:str}", summary="Delete an MCP relay", status_code=204)
    async def delete_relay(self, request: Request, db_session: AsyncSession, slug: str) -> None:
        await db_session.delete(await _row(db_session, slug))
        await commit_and_apply(request, db_session)


async def _row(session: AsyncSession, slug: str) -> McpRelay:
    row = await session.scalar(select(McpRelay).where(McpRelay.slug == slug))
    if row is None:
        raise NotFoundException(f"no MCP relay with slug {slug!r}")
    return row
