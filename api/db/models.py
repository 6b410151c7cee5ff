"""ORM models. Schema changes go through alembic migrations in `alembic/versions`."""

from __future__ import annotations

from datetime import datetime

from advanced_alchemy.base import IdentityBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import JSON, Boolean, Float, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

#: Every table's `id` is the database's own auto-increment, as the migrations create it (SQLite's INTEGER PRIMARY
#: KEY, PostgreSQL's serial, MariaDB's AUTO_INCREMENT). advanced-alchemy's BigIntBase would instead call
#: `nextval('<table>_id_seq')` explicitly: on PostgreSQL that only works because serial happens to name its sequence
#: that way, and on MariaDB no such sequence exists.
Base = IdentityBase


class RequestLog(Base):
    """One proxied inference request, written after it completed."""

    __tablename__ = "request_logs"
    __table_args__ = (
        Index("ix_request_logs_created_at", "created_at"),
        Index("ix_request_logs_model", "model"),
        Index("ix_request_logs_api_key_id", "api_key_id"),
        Index("ix_request_logs_session_id", "session_id"),
    )

    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(512))
    model: Mapped[str | None] = mapped_column(String(255), nullable=True)
    upstream_model: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status_code: Mapped[int] = mapped_column(Integer)
    duration_ms: Mapped[float] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    completion_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cached_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tokens_per_second: Mapped[float | None] = mapped_column(Float, nullable=True)
    streamed: Mapped[bool] = mapped_column(Boolean, default=False)
    client_addr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # accounting (issue 4): bytes, extra token kinds, cost, bounded capture (zlib JSON, see core.capture)
    request_bytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_bytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cache_creation_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reasoning_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cost_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    cost_known: Mapped[bool] = mapped_column(Boolean, default=False)
    capture: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)
    # access (issue 5): who asked, attribution, the routing decision and credential audit
    api_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    api_key_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    client_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    end_user: Mapped[str | None] = mapped_column(String(255), nullable=True)
    session_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    policy_rule_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    policy_action: Mapped[str | None] = mapped_column(String(20), nullable=True)
    routed_model: Mapped[str | None] = mapped_column(String(255), nullable=True)
    credentials_used: Mapped[list | None] = mapped_column(JSON, nullable=True)


class AppSetting(Base):
    """Runtime settings editable from the admin API (one JSON value per key)."""

    __tablename__ = "app_settings"

    key: Mapped[str] = mapped_column(String(100), unique=True)
    value: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))


class LibraryPreset(Base):
    """A model library entry's serving preset (see core.presets.ModelPreset; only the set fields are stored)."""

    __tablename__ = "library_presets"

    model_id: Mapped[str] = mapped_column(String(512), unique=True)
    preset: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
