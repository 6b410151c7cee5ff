"""SignIn: the sign-in parts one gateway process owns (accounts, throttle, passkey ceremonies, admin token).

The runtime holds one (`runtime.sign_in`); the admin guard and the `/api/auth/*` routes use it.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from litestar.datastructures import Cookie
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth.accounts import AccountStore, NewSession, SessionRecord, UserRecord
from api.auth.passkeys import PasskeyCeremonies
from api.auth.throttle import LoginThrottle
from api.settings import Settings

SESSION_COOKIE = "switchyard_session"
CSRF_COOKIE = "switchyard_csrf"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True, slots=True)
class AdminIdentity:
    """Who is calling the admin API: a signed-in browser, the static admin token, or an admin API key."""

    kind: Literal["session", "admin_token", "api_key"]
    session: SessionRecord | None = None
    #: the cookie token of a session (to sign it out)
    session_token: str | None = None

    @property
    def user(self) -> UserRecord | None:
        return self.session.user if self.session is not None else None


class SignIn:
    def __init__(self, engine: AsyncEngine, settings: Settings):
        self.settings = settings
        self.accounts = AccountStore(engine)
        self.throttle = LoginThrottle()
        self.passkeys = PasskeyCeremonies()
        self.session_lifetime = timedelta(hours=settings.session_hours)

    def is_admin_token(self, secret: str) -> bool:
        """True for the static `SWITCHYARD_ADMIN_TOKEN` (compared in constant time); never when it is unset."""
        token = self.settings.admin_token
        return bool(token) and hmac.compare_digest(secret.encode(), token.encode())

    def session_cookies(self, session: NewSession, *, secure: bool) -> list[Cookie]:
        """The HttpOnly session cookie and the readable CSRF cookie (double-submit for browser scripts)."""
        max_age = int(self.session_lifetime.total_seconds())
        return [
            Cookie(
                key=SESSION_COOKIE,
                value=session.token,
                max_age=max_age,
                path="/",
                httponly=True,
                samesite="lax",
                secure=secure,
            ),
            Cookie(
                key=CSRF_COOKIE,
                value=session.csrf_token,
                max_age=max_age,
                path="/",
                httponly=False,
                samesite="lax",
                secure=secure,
            ),
        ]

    @staticmethod
    def cleared_cookies(*, secure: bool) -> list[Cookie]:
        return [
            Cookie(
                key=name, value="", max_age=0, path="/", httponly=name == SESSION_COOKIE, samesite="lax", secure=secure
            )
            for name in (SESSION_COOKIE, CSRF_COOKIE)
        ]
