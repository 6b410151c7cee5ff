"""`/api/auth/*`: sign-up (first account only), password and passkey sign-in, sign-out, who am I.

Every call that signs someone in answers with the session (user, CSRF token, expiry) and sets two
cookies: the HttpOnly session cookie and a readable CSRF cookie. Both are `SameSite=Lax`, and
`Secure` when the request came over HTTPS (directly or, per `X-Forwarded-Proto`, through a proxy).
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.status_codes import HTTP_429_TOO_MANY_REQUESTS
from webauthn.helpers import base64url_to_bytes

from api.admin.deps import get_runtime
from api.auth.accounts import PasskeyRecord, SignupClosed, UserRecord
from api.auth.passkeys import PasskeyError, RelyingParty, relying_party
from api.auth.passwords import hash_password, needs_rehash, password_problem, verify_password
from api.auth.sign_in import SESSION_COOKIE, AdminIdentity, SignIn

_USERNAME = re.compile(r"^[\w.@+-]{1,150}$")


class Credentials(msgspec.Struct):
    username: str
    password: str


class UserInfo(msgspec.Struct):
    id: int
    username: str
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def of(cls, user: UserRecord) -> UserInfo:
        return cls(user.id, user.username, user.created_at, user.last_login_at)


class SessionInfo(msgspec.Struct):
    """A signed-in session: send `csrf_token` as `x-csrf-token` on state-changing calls."""

    user: UserInfo
    csrf_token: str
    expires_at: datetime


class WhoAmI(msgspec.Struct):
    kind: str  # session | admin_token | api_key
    user: UserInfo | None = None
    csrf_token: str | None = None
    expires_at: datetime | None = None


class AuthStatus(msgspec.Struct):
    signup_open: bool
    signed_in: bool


class PasskeyOptions(msgspec.Struct):
    """Pass `publicKey` to `navigator.credentials.create/get`, then send the result back with `ceremony`."""

    ceremony: str
    public_key: dict[str, Any] = msgspec.field(name="publicKey")


class PasskeyLoginStart(msgspec.Struct):
    #: restrict to this account's passkeys; omit for discoverable passkeys (no username typed)
    username: str | None = None


class PasskeyRegistration(msgspec.Struct):
    ceremony: str
    #: the PublicKeyCredential from navigator.credentials.create, JSON-encoded (base64url fields)
    credential: dict[str, Any]
    name: str | None = None


class PasskeyAssertion(msgspec.Struct):
    ceremony: str
    #: the PublicKeyCredential from navigator.credentials.get, JSON-encoded (base64url fields)
    credential: dict[str, Any]


class PasskeyInfo(msgspec.Struct):
    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None
    transports: list[str]

    @classmethod
    def of(cls, passkey: PasskeyRecord) -> PasskeyInfo:
        return cls(passkey.id, passkey.name, passkey.created_at, passkey.last_used_at, passkey.transports)


class TooManyAttempts(HTTPException):
    status_code = HTTP_429_TOO_MANY_REQUESTS


def is_https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.scope.get("scheme") == "https" or forwarded == "https"


def _client_addr(request: Request) -> str | None:
    client = request.scope.get("client")
    return client[0] if client else None


def _sign_in(request: Request) -> SignIn:
    return get_runtime(request).sign_in


def _identity(request: Request) -> AdminIdentity | None:
    return request.scope.get("user")


def _session_user(request: Request) -> UserRecord:
    identity = _identity(request)
    if identity is None or identity.user is None:
        raise NotAuthorizedException("sign in first (passkeys belong to a signed-in user)")
    return identity.user


def _rp(request: Request) -> RelyingParty:
    return relying_party(
        get_runtime(request).settings,
        "https" if is_https(request) else "http",
        request.headers.get("host", "localhost"),
    )


async def _start_session(request: Request, user: UserRecord, status_code: int) -> Response[SessionInfo]:
    sign_in = _sign_in(request)
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:
        await sign_in.accounts.delete_session(previous)
    session = await sign_in.accounts.create_session(
        user.id,
        sign_in.session_lifetime,
        client_addr=_client_addr(request),
        user_agent=request.headers.get("user-agent"),
    )
    body = SessionInfo(user=UserInfo.of(user), csrf_token=session.csrf_token, expires_at=session.expires_at)
    return Response(body, status_code=status_code, cookies=sign_in.session_cookies(session, secure=is_https(request)))


class AuthController(Controller):
    path = "/api/auth"
    tags = ["auth"]

    @get("/status", summary="Whether sign-up is open (no account yet) and whether the caller is signed in")
    async def status(self, request: Request) -> AuthStatus:
        users = await _sign_in(request).accounts.user_count()
        return AuthStatus(signup_open=users == 0, signed_in=_identity(request) is not None)

    @post(
        "/signup",
        summary="Create the first (admin) account and sign in; closed once an account exists",
        status_code=201,
    )
    async def signup(self, request: Request, data: Credentials) -> Response[SessionInfo]:
        sign_in = _sign_in(request)
        username = data.username.strip()
        if not _USERNAME.match(username):
            raise ValidationException("the username must be 1–150 letters, digits or . @ + - _")
        if problem := password_problem(data.password):
            raise ValidationException(problem)
        if await sign_in.accounts.user_count():
            raise PermissionDeniedException("sign-up is closed: an account exists already")
        password_hash = await asyncio.to_thread(hash_password, data.password)
        try:
            user = await sign_in.accounts.create_first_user(username, password_hash)
        except SignupClosed:
            raise PermissionDeniedException("sign-up is closed: an account exists already") from None
        return await _start_session(request, user, 201)

    @post("/login", summary="Sign in with username and password (throttled per account and address)", status_code=200)
    async def login(self, request: Request, data: Credentials) -> Response[SessionInfo]:
        sign_in = _sign_in(request)
        address = _client_addr(request)
        wait = sign_in.throttle.retry_after(data.username, address)
        if wait > 0:
            seconds = max(1, round(wait + 0.5))
            raise TooManyAttempts(
                f"too many failed sign-ins; try again in {seconds} s", headers={"retry-after": str(seconds)}
            )
        user = await sign_in.accounts.find_user(data.username.strip())
        ok = await asyncio.to_thread(verify_password, user.password_hash if user else None, data.password)
        if not ok or user is None:
            sign_in.throttle.failed(data.username, address)
            raise NotAuthorizedException("wrong username or password")
        sign_in.throttle.succeeded(data.username)
        rehashed = None
        if user.password_hash and needs_rehash(user.password_hash):
            rehashed = await asyncio.to_thread(hash_password, data.password)
        await sign_in.accounts.signed_in(user.id, rehashed)
        return await _start_session(request, user, 200)

    @post("/logout", summary="Sign out: ends the session and clears its cookies", status_code=200)
    async def logout(self, request: Request) -> Response[dict[str, bool]]:
        identity = _identity(request)
        if identity is not None and identity.session_token:
            await _sign_in(request).accounts.delete_session(identity.session_token)
        return Response({"signed_out": True}, cookies=SignIn.cleared_cookies(secure=is_https(request)))

    @get("/me", summary="The caller: a signed-in user (with the CSRF token) or an admin key")
    async def me(self, request: Request) -> WhoAmI:
        identity = _identity(request)
        if identity is None:
            raise NotAuthorizedException("not signed in")
        if identity.session is None:
            return WhoAmI(kind=identity.kind)
        session = identity.session
        return WhoAmI(
            kind="session", user=UserInfo.of(session.user), csrf_token=session.csrf_token, expires_at=session.expires_at
        )


class PasskeyController(Controller):
    path = "/api/auth/passkeys"
    tags = ["auth"]

    @get("/", summary="The signed-in user's passkeys")
    async def list_passkeys(self, request: Request) -> list[PasskeyInfo]:
        user = _session_user(request)
        return [PasskeyInfo.of(p) for p in await _sign_in(request).accounts.passkeys_of(user.id)]

    @post("/register/options", summary="Start registering a passkey for the signed-in user", status_code=200)
    async def register_options(self, request: Request) -> PasskeyOptions:
        user = _session_user(request)
        sign_in = _sign_in(request)
        existing = [base64url_to_bytes(p.credential_id) for p in await sign_in.accounts.passkeys_of(user.id)]
        ceremony, options = sign_in.passkeys.registration_options(_rp(request), user.id, user.username, existing)
        return PasskeyOptions(ceremony=ceremony, public_key=options)

    @post("/register/verify", summary="Finish registering a passkey", status_code=201)
    async def register_verify(self, request: Request, data: PasskeyRegistration) -> PasskeyInfo:
        user = _session_user(request)
        sign_in = _sign_in(request)
        try:
            registered = sign_in.passkeys.verify_registration(data.ceremony, user.id, data.credential)
        except PasskeyError as exc:
            raise ClientException(str(exc)) from None
        if await sign_in.accounts.passkey_by_credential(registered.credential_id) is not None:
            raise ClientException("this passkey is registered already")
        name = (data.name or "").strip()[:100] or f"passkey {registered.credential_id[:8]}"
        passkey = await sign_in.accounts.add_passkey(
            user.id,
            registered.credential_id,
            registered.public_key,
            registered.sign_count,
            registered.transports,
            name,
        )
        return PasskeyInfo.of(passkey)

    @delete("/{passkey_id:int}", summary="Remove one of the signed-in user's passkeys", status_code=204)
    async def delete_passkey(self, request: Request, passkey_id: int) -> None:
        user = _session_user(request)
        if not await _sign_in(request).accounts.delete_passkey(user.id, passkey_id):
            raise NotFoundException("no such passkey")

    @post("/login/options", summary="Start a passkey sign-in", status_code=200)
    async def login_options(self, request: Request, data: PasskeyLoginStart | None = None) -> PasskeyOptions:
        sign_in = _sign_in(request)
        allow: list[bytes] | None = None
        if data is not None and data.username:
            user = await sign_in.accounts.find_user(data.username.strip())
            passkeys = await sign_in.accounts.passkeys_of(user.id) if user else []
            # an unknown user gets an empty allow-list too: the answer does not tell which accounts exist
            allow = [base64url_to_bytes(p.credential_id) for p in passkeys] or None
        ceremony, options = sign_in.passkeys.authentication_options(_rp(request), allow)
        return PasskeyOptions(ceremony=ceremony, public_key=options)

    @post("/login/verify", summary="Finish a passkey sign-in: starts a session", status_code=200)
    async def login_verify(self, request: Request, data: PasskeyAssertion) -> Response[SessionInfo]:
        sign_in = _sign_in(request)
        credential_id = data.credential.get("rawId") or data.credential.get("id")
        passkey = await sign_in.accounts.passkey_by_credential(str(credential_id)) if credential_id else None
        if passkey is None:
            raise NotAuthorizedException("unknown passkey")
        try:
            new_count = sign_in.passkeys.verify_authentication(
                data.ceremony, data.credential, passkey.public_key, passkey.sign_count
            )
        except PasskeyError as exc:
            raise NotAuthorizedException(str(exc)) from None
        await sign_in.accounts.passkey_used(passkey.id, new_count)
        user = await sign_in.accounts.get_user(passkey.user_id)
        if user is None:
            raise NotAuthorizedException("unknown passkey")
        await sign_in.accounts.signed_in(user.id)
        return await _start_session(request, user, 200)
