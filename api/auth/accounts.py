"""AccountStore: users, sessions and passkeys in the database.

Sessions are server-side: the cookie carries a random token, the table keeps only its SHA-256,
so a leaked database does not hand out live sessions. Each session has its own CSRF token.

Sign-up is open only while no user exists. "No user exists" is checked and claimed in one
transaction that also inserts a unique marker row in `app_settings`: two sign-ups racing each
other (even from two worker processes) cannot both succeed, the second hits the unique key.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from api.db.admin_models import Passkey, User, UserSession
from api.db.models import AppSetting

_SIGNUP_MARKER = "auth.first_user"


class SignupClosed(Exception):
    """An account exists already: sign-up is closed."""


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    username: str
    password_hash: str | None
    created_at: datetime
    last_login_at: datetime | None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: int
    user: UserRecord
    csrf_token: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session just created: `token` goes into the cookie and is never stored."""

    token: str
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class PasskeyRecord:
    id: int
    user_id: int
    credential_id: str
    public_key: bytes
    sign_count: int
    transports: list[str]
    name: str
    created_at: datetime
    last_used_at: datetime | None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _user(row: User) -> UserRecord:
    return UserRecord(row.id, row.username, row.password_hash, row.created_at, row.last_login_at)


def _passkey(row: Passkey) -> PasskeyRecord:
    return PasskeyRecord(
        row.id,
        row.user_id,
        row.credential_id,
        row.public_key,
        row.sign_count,
        list(row.transports or []),
        row.name,
        row.created_at,
        row.last_used_at,
    )


class AccountStore:
    def __init__(self, engine: AsyncEngine):
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    # ------------------------------------------------------------------ users

    async def user_count(self) -> int:
        async with self._sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(User)) or 0)

    async def create_first_user(self, username: str, password_hash: str) -> UserRecord:
        """Create the first account; raises SignupClosed when one exists (or another sign-up won the race)."""
        now = datetime.now(UTC)
        try:
            async with self._sessions() as session, session.begin():
                if await session.scalar(select(func.count()).select_from(User)):
                    raise SignupClosed()
                session.add(AppSetting(key=_SIGNUP_MARKER, value={"username": username}, updated_at=now))
                await session.flush()
                user = User(username=username, password_hash=password_hash, created_at=now)
                session.add(user)
                await session.flush()
                return _user(user)
        except IntegrityError:
            raise SignupClosed() from None

    async def find_user(self, username: str) -> UserRecord | None:
        async with self._sessions() as session:
            row = await session.scalar(select(User).where(User.username == username))
        return _user(row) if row is not None else None

    async def get_user(self, user_id: int) -> UserRecord | None:
        async with self._sessions() as session:
            row = await session.get(User, user_id)
        return _user(row) if row is not None else None

    async def signed_in(self, user_id: int, new_password_hash: str | None = None) -> None:
        """Record a successful sign-in (and store a rehashed password when the parameters got stronger)."""
        values: dict[str, object] = {"last_login_at": datetime.now(UTC)}
        if new_password_hash is not None:
            values["password_hash"] = new_password_hash
        async with self._sessions() as session, session.begin():
            await session.execute(update(User).where(User.id == user_id).values(**values))

    # --------------------------------------------------------------- sessions

    async def create_session(
        self, user_id: int, lifetime: timedelta, *, client_addr: str | None = None, user_agent: str | None = None
    ) -> NewSession:
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        expires = now + lifetime
        async with self._sessions() as session, session.begin():
            session.add(
                UserSession(
                    token_hash=token_hash(token),
                    user_id=user_id,
                    csrf_token=csrf,
                    created_at=now,
                    expires_at=expires,
                    client_addr=client_addr,
                    user_agent=(user_agent or "")[:255] or None,
                )
            )
        return NewSession(token, csrf, expires)

    async def session_for(self, token: str) -> SessionRecord | None:
        """The live session behind a cookie token (None when unknown or expired)."""
        if not token or len(token) > 200:
            return None
        async with self._sessions() as session:
            found = (
                await session.execute(
                    select(UserSession, User)
                    .join(User, User.id == UserSession.user_id)
                    .where(UserSession.token_hash == token_hash(token))
                )
            ).first()
        if found is None:
            return None
        row, user = found
        if row.expires_at <= datetime.now(UTC):
            return None
        return SessionRecord(row.id, _user(user), row.csrf_token, row.created_at, row.expires_at)

    async def delete_session(self, token: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(delete(UserSession).where(UserSession.token_hash == token_hash(token)))

    async def delete_expired_sessions(self) -> int:
        async with self._sessions() as session, session.begin():
            result = await session.execute(delete(UserSession).where(UserSession.expires_at <= datetime.now(UTC)))
        return result.rowcount or 0

    # --------------------------------------------------------------- passkeys

    async def add_passkey(
        self, user_id: int, credential_id: str, public_key: bytes, sign_count: int, transports: list[str], name: str
    ) -> PasskeyRecord:
        async with self._sessions() as session, session.begin():
            row = Passkey(
                user_id=user_id,
                credential_id=credential_id,
                public_key=public_key,
                sign_count=sign_count,
                transports=transports or None,
                name=name,
                created_at=datetime.now(UTC),
            )
            session.add(row)
            await session.flush()
            return _passkey(row)

    async def passkeys_of(self, user_id: int) -> list[PasskeyRecord]:
        async with self._sessions() as session:
            rows = (await session.scalars(select(Passkey).where(Passkey.user_id == user_id).order_by(Passkey.id))).all()
        return [_passkey(row) for row in rows]

    async def passkey_by_credential(self, credential_id: str) -> PasskeyRecord | None:
        async with self._sessions() as session:
            row = await session.scalar(select(Passkey).where(Passkey.credential_id == credential_id))
        return _passkey(row) if row is not None else None

    async def passkey_used(self, passkey_id: int, sign_count: int) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(Passkey)
                .where(Passkey.id == passkey_id)
                .values(sign_count=sign_count, last_used_at=datetime.now(UTC))
            )

    async def delete_passkey(self, user_id: int, passkey_id: int) -> bool:
        async with self._sessions() as session, session.begin():
            result = await session.execute(delete(Passkey).where(Passkey.id == passkey_id, Passkey.user_id == user_id))
        return bool(result.rowcount)
