"""ORM models of the admin side: dashboard accounts, their sessions and passkeys, model load history.

Kept apart from :mod:`api.db.models` (the request log) so the sign-in tables read as one unit;
they share the same metadata, and migration ``0005`` creates them.
"""

from __future__ import annotations

from datetime import datetime

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from api.db.models import Base

_USER_FK = BigInteger().with_variant(Integer(), "sqlite")


class User(Base):
    """A dashboard account. The first one is created by sign-up; sign-up then closes."""

    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(150), unique=True)
    #: argon2id hash (PHC string); None for an account that signs in with passkeys only
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)


class UserSession(Base):
    """A signed-in browser. Only the SHA-256 of the cookie's token is stored."""

    __tablename__ = "user_sessions"
    __table_args__ = (Index("ix_user_sessions_expires_at", "expires_at"),)

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(_USER_FK, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: the session's CSRF token: state-changing calls must echo it in `x-csrf-token`
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    client_addr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(255), nullable=True)


class Passkey(Base):
    """A WebAuthn credential registered by a user."""

    __tablename__ = "passkeys"

    user_id: Mapped[int] = mapped_column(_USER_FK, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: base64url of the credential id (what the browser sends back as `rawId`)
    credential_id: Mapped[str] = mapped_column(String(512), unique=True)
    #: COSE-encoded public key, as verified at registration
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), default=0)
    transports: Mapped[list | None] = mapped_column(JSON, nullable=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)


class ModelEvent(Base):
    """One state change of a local model server (starting, ready, stopping, stopped, failed)."""

    __tablename__ = "model_events"
    __table_args__ = (Index("ix_model_events_model_at", "model", "at"), Index("ix_model_events_at", "at"))

    at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    model: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(20))
    previous: Mapped[str | None] = mapped_column(String(20), nullable=True)
    #: seconds from start to healthy, on `ready` events
    load_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
