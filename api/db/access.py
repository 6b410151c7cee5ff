"""ORM models of access control: API keys, routing policy rules, the credential vault, MCP relays and sampling overrides.

They are read into compiled in-memory snapshots by :class:`api.access_store.AccessStore`; the hot path never
queries these tables. Nested policy structures (match conditions, route targets, credential bindings) are stored
as JSON in the shapes of their ``core.policy`` / ``core.vault`` dataclasses, so ``msgspec.convert`` rebuilds them.
Schema changes go through alembic (``0004_access``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import JSON, Boolean, Index, Integer, LargeBinary, String, Text, text, true
from sqlalchemy.orm import Mapped, mapped_column

from api.db.models import Base


class ApiKey(Base):
    """A Switchyard API key: the secret is never stored, only its keyed hash and a display prefix."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # type: ignore[assignment]  # "key_<12 hex>"
    name: Mapped[str] = mapped_column(String(255))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    rpm_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tpm_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    allowed_models: Mapped[list[str]] = mapped_column(JSON, default=list)
    allowed_relays: Mapped[list[str]] = mapped_column(JSON, default=list)
    system_prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["inference"])
    last_used_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)


class PolicyRuleRow(Base):
    """One routing policy rule (``core.policy.PolicyRule``); rules apply in ascending ``position``."""

    __tablename__ = "policy_rules"
    __table_args__ = (Index("ix_policy_rules_position", "position"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # type: ignore[assignment]  # "rule_<12 hex>"
    position: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    name: Mapped[str] = mapped_column(String(255), default="", server_default="")
    match: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # RuleMatch
    action: Mapped[str] = mapped_column(String(20))
    #: the action's parameters: rewrite_model, reject_status, reject_message, target (RouteTarget)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    bindings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # [CredentialBinding]
    max_body_bytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    hits: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))


class Credential(Base):
    """An upstream credential, AES-256-GCM encrypted under ``SWITCHYARD_SECRET_KEY`` (``core.vault``)."""

    __tablename__ = "credentials"

    slug: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="", server_default="")
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)


class McpRelay(Base):
    """An MCP Streamable HTTP server reachable as ``/mcp-relays/{slug}``, with credentials injected."""

    __tablename__ = "mcp_relays"

    slug: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="", server_default="")
    upstream_url: Mapped[str] = mapped_column(String(2048))
    bindings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # [CredentialBinding]
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))


class SamplingOverrideRow(Base):
    """Sampling parameters forced on every request for one model (``core.policy.SamplingOverrides``)."""

    __tablename__ = "sampling_overrides"

    model: Mapped[str] = mapped_column(String(255), unique=True)
    values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


__all__ = ["ApiKey", "Credential", "McpRelay", "PolicyRuleRow", "SamplingOverrideRow"]
