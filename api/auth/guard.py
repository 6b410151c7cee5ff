"""AdminGuard: the middleware that decides who may call the admin API.

| path                                   | rule                                                  |
|----------------------------------------|-------------------------------------------------------|
| `/api/docs*`, `/health`, everything else | open                                                |
| `/api/auth/*`                          | open; the caller is identified when credentials come  |
| `/api/*`, `/running`, `/logs*`         | a session or an admin API key, else 401               |
| `/metrics`                             | open, unless the live setting `protect_metrics` is on |

Credentials: `Authorization: Bearer <key>` or `x-api-key: <key>` (the static admin token or a
database key with the admin scope, through `runtime.authenticate_admin_key`), else the session
cookie. A state-changing call (POST, PUT, PATCH, DELETE) made with the session cookie must carry
the session's CSRF token in `x-csrf-token`, or it gets 403: a cookie is sent by the browser on its
own, a custom header only by the dashboard's own scripts. Calls with a key are exempt, a key is
never sent implicitly. The sign-in calls that create a session are exempt too (there is none yet).

The identity goes into the ASGI scope as `scope["user"]` (`request.user`): an `AdminIdentity` or None.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Literal

from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from api.auth.sign_in import CSRF_HEADER, SESSION_COOKIE, AdminIdentity

if TYPE_CHECKING:
    from api.runtime import Runtime

Access = Literal["open", "identify", "admin"]
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: sign-in calls that create a session: no session to take a CSRF token from yet
CSRF_EXEMPT = frozenset(
    {"/api/auth/login", "/api/auth/signup", "/api/auth/passkeys/login/options", "/api/auth/passkeys/login/verify"}
)


def access_for(path: str, runtime: Runtime) -> Access:
    if path.startswith("/api/auth/"):
        return "identify"
    if path == "/api/docs" or path.startswith("/api/docs/"):
        return "open"
    if path in ("/api", "/running", "/logs") or path.startswith(("/api/", "/logs/")):
        return "admin"
    if path == "/metrics":
        return "admin" if runtime.live.protect_metrics else "open"
    return "open"


def presented_key(connection: ASGIConnection) -> str | None:
    """The API key in `Authorization: Bearer …` or `x-api-key`, if any."""
    authorization = connection.headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return connection.headers.get("x-api-key") or None


async def identify(connection: ASGIConnection, runtime: Runtime) -> AdminIdentity | None:
    """The caller's identity; raises NotAuthorizedException for a key that is not an admin key."""
    key = presented_key(connection)
    if key is not None:
        if runtime.sign_in.is_admin_token(key):
            return AdminIdentity("admin_token")
        if runtime.authenticate_admin_key(key):
            return AdminIdentity("api_key")
        raise NotAuthorizedException("this API key is not valid for the admin API")
    token = connection.cookies.get(SESSION_COOKIE)
    if token:
        session = await runtime.sign_in.accounts.session_for(token)
        if session is not None:
            return AdminIdentity("session", session=session, session_token=token)
    return None


class AdminGuard(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        runtime: Runtime = Litestar.from_scope(scope).state.runtime
        path = scope["path"]
        access = access_for(path, runtime)
        if access == "open":
            await next_app(scope, receive, send)
            return
        connection: ASGIConnection = ASGIConnection(scope)
        try:
            identity = await identify(connection, runtime)
        except NotAuthorizedException:
            if access == "admin":
                raise
            identity = None
        if identity is None and access == "admin":
            raise NotAuthorizedException("sign in or send an admin API key (Authorization: Bearer …)")
        if (
            identity is not None
            and identity.kind == "session"
            and scope["method"] in UNSAFE_METHODS
            and path not in CSRF_EXEMPT
        ):
            assert identity.session is not None
            sent = connection.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), identity.session.csrf_token.encode()):
                raise PermissionDeniedException(f"missing or wrong CSRF token: send the {CSRF_HEADER} header")
        scope["user"] = identity
        await next_app(scope, receive, send)
