"""Who the dashboard acts for: the signed-in browser's session, forwarded to the admin API.

Reflex runs page states on the server, so the admin API sees the Reflex backend, not the browser, as its
caller. The browser holds the HttpOnly session cookie for this origin and sends it with the websocket
handshake of ``/_event``; Reflex keeps the handshake's headers in ``state.router.headers``. Every admin call a
state makes forwards that cookie and the session's CSRF token (the readable ``switchyard_csrf`` cookie, which
sign-in sets to the session's token), so each call is made as the signed-in user: with their rights, subject
to the same checks as a script holding the cookie. The dashboard never uses ``SWITCHYARD_ADMIN_TOKEN``.

Because the headers are those of the websocket handshake, signing in and out ends with a full page load
(``window.location``): the new connection carries the new cookie.

The websocket accepts connections from any origin, and a browser sends this site's cookies along with a
handshake started by another site on the same host (another port of ``localhost``, say). Such a page must not
get to act as the user through the dashboard's own calls, which carry the CSRF token: credentials are only
forwarded when the handshake's ``Origin`` is this site (its ``Host``, ``X-Forwarded-Host`` behind a proxy, or
``SWITCHYARD_PUBLIC_URL``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import quote, urlsplit

import reflex as rx

from ui_reflex.api_client import AdminClient, ApiError, NotSignedIn

# Names set by api.auth.sign_in (not imported: the UI never imports the server's modules).
SESSION_COOKIE = "switchyard_session"
CSRF_COOKIE = "switchyard_csrf"
CSRF_HEADER = "x-csrf-token"


def same_site_origin(origin: str, hosts: Iterable[str]) -> bool:
    """Whether a handshake's `origin` (``scheme://host[:port]``; empty when no browser sent one) is one of `hosts`."""
    if not origin:
        return True  # not a browser: nothing can have been sent on someone's behalf
    netloc = urlsplit(origin).netloc.lower()
    return bool(netloc) and netloc in {h.strip().lower() for h in hosts if h and h.strip()}


def forwarded_credentials(cookie_header: str, *, origin: str = "", hosts: Iterable[str] = ()) -> dict[str, str]:
    """Headers that make an admin call as the browser's session: its session cookie and CSRF token.

    Only the two sign-in cookies are forwarded, never the browser's other cookies for this host; and nothing
    when the connection came from a page of another origin (see the module docstring).
    """
    if not same_site_origin(origin, hosts):
        return {}
    jar: SimpleCookie = SimpleCookie()
    for part in (cookie_header or "").split(";"):
        try:
            jar.load(part.strip())
        except CookieError:
            continue  # one malformed cookie must not hide the others
    headers: dict[str, str] = {}
    session = jar.get(SESSION_COOKIE)
    if session is not None and session.value:
        headers["cookie"] = f"{SESSION_COOKIE}={session.value}"
        csrf = jar.get(CSRF_COOKIE)
        if csrf is not None and csrf.value:
            headers[CSRF_HEADER] = csrf.value
    return headers


def admin_api(state: rx.State | Any) -> AdminClient:
    """The admin API client for the browser tab behind `state`, acting as its signed-in user."""
    try:
        headers = state.router.headers
    except AttributeError:
        return AdminClient()
    raw = getattr(headers, "raw_headers", {}) or {}
    public = urlsplit(os.environ.get("SWITCHYARD_PUBLIC_URL", "")).netloc
    hosts = [headers.host, raw.get("x-forwarded-host", "").split(",")[0], public]
    return AdminClient(headers=forwarded_credentials(headers.cookie, origin=headers.origin, hosts=hosts))


def login_url(next_path: str) -> str:
    """``/login`` that returns to `next_path` after signing in."""
    if not next_path or next_path.startswith("/login") or not next_path.startswith("/"):
        return "/login"
    return "/login?next=" + quote(next_path, safe="/")


class SessionState(rx.State):
    """The signed-in user of this tab. `require` runs first on every page: it sends visitors to /login."""

    username: str = ""
    checked: bool = False

    @rx.event
    async def require(self):
        """Check the session with `GET /api/auth/me`; without one, go to /login (and come back afterwards)."""
        try:
            async with admin_api(self) as api:
                me = await api.whoami()
        except NotSignedIn:
            self.username, self.checked = "", False
            url = self.router.url
            path = url.path + (f"?{url.query}" if url.query else "")
            return rx.redirect(login_url(path), replace=True)
        except ApiError:
            # the API is unreachable or failing: show the page, which says what is wrong
            self.checked = True
            return None
        self.username = me.username or me.kind
        self.checked = True
        return None
