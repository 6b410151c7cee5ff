"""`/login`: password or passkey sign-in; on the very first visit (no account yet) it creates the admin account.

The credentials go from the page to `/api/auth/*` directly (``ui_reflex.browser``): the browser must receive
the HttpOnly session cookie itself. This state only knows whether sign-up is open, where to go afterwards,
and what went wrong.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from ui_reflex import browser
from ui_reflex.api_client import ApiError
from ui_reflex.layout import brand
from ui_reflex.session import SessionState, admin_api


def _safe_next(value: str) -> str:
    return value if value.startswith("/") and not value.startswith("//") and not value.startswith("/login") else "/"


class LoginState(rx.State):
    signup_open: bool = False
    ready: bool = False
    busy: bool = False
    error: str = ""
    next_path: str = "/"

    @rx.event
    async def load(self):
        session = await self.get_state(SessionState)
        session.username, session.checked = "", False  # nothing of the dashboard shows until the next check
        self.error, self.busy = "", False
        self.next_path = _safe_next(self.router.url.query_parameters.get("next", "/"))
        try:
            async with admin_api(self) as api:
                status = await api.auth_status()
        except ApiError as exc:
            self.error = f"The server did not answer: {exc.message}"
            self.ready = True
            return None
        if status.signed_in:
            return rx.redirect(self.next_path, replace=True)
        self.signup_open = status.signup_open
        self.ready = True
        return None

    @rx.event
    def submit(self):
        self.busy, self.error = True, ""
        mode = "signup" if self.signup_open else "login"
        return browser.call(browser.PASSWORD_SIGN_IN, mode, self.next_path, callback=LoginState.finished)

    @rx.event
    def passkey(self):
        self.busy, self.error = True, ""
        return browser.call(browser.PASSKEY_SIGN_IN, None, self.next_path, callback=LoginState.finished)

    @rx.event
    def finished(self, result: dict[str, Any]):
        """The browser's answer; on success it is already loading the next page."""
        if not result or result.get("ok"):
            return
        self.busy = False
        status, message = result.get("status"), str(result.get("message") or "sign-in failed")
        if status == 401:
            message = "Wrong username or password." if "passkey" not in message else message
        self.error = message[:1].upper() + message[1:]


def _field(label: str, input_id: str, **props: Any) -> rx.Component:
    return rx.vstack(
        rx.el.label(label, html_for=input_id, style={"font_size": "14px", "font_weight": "500"}),
        rx.input(id=input_id, size="3", width="100%", **props),
        spacing="1",
        width="100%",
    )


def login_page() -> rx.Component:
    s = LoginState
    signup = s.signup_open
    return rx.center(
        rx.card(
            rx.vstack(
                brand(),
                rx.heading(rx.cond(signup, "Create the admin account", "Sign in"), size="6", id="login-title"),
                rx.cond(
                    signup,
                    rx.text(
                        "No account exists yet. The account you create now administers this Switchyard; "
                        "sign-up closes right after.",
                        size="2",
                        color=rx.color("gray", 11),
                    ),
                ),
                rx.cond(
                    s.error != "",
                    rx.callout(s.error, icon="triangle-alert", color_scheme="red", role="alert", width="100%"),
                ),
                rx.form(
                    rx.vstack(
                        _field("Username", "login-username", auto_complete="username", auto_focus=True),
                        _field(
                            "Password",
                            "login-password",
                            type="password",
                            auto_complete=rx.cond(signup, "new-password", "current-password"),
                        ),
                        rx.button(
                            rx.cond(signup, "Create account", "Sign in"),
                            type="submit",
                            size="3",
                            width="100%",
                            loading=s.busy,
                            id="login-submit",
                        ),
                        spacing="4",
                        width="100%",
                    ),
                    on_submit=LoginState.submit,
                    reset_on_submit=False,
                    width="100%",
                ),
                rx.cond(
                    ~signup,
                    rx.vstack(
                        rx.hstack(
                            rx.separator(size="4"),
                            rx.text("or", size="1"),
                            rx.separator(size="4"),
                            width="100%",
                            align="center",
                        ),
                        rx.button(
                            rx.icon("fingerprint", size=18),
                            "Sign in with a passkey",
                            variant="outline",
                            size="3",
                            width="100%",
                            disabled=s.busy,
                            on_click=LoginState.passkey,
                            id="passkey-sign-in",
                        ),
                        width="100%",
                        spacing="3",
                    ),
                ),
                spacing="4",
                width="100%",
                visibility=rx.cond(s.ready, "visible", "hidden"),
            ),
            size="4",
            width="min(420px, 92vw)",
        ),
        min_height="100vh",
        width="100%",
        background=rx.color("gray", 2),
    )
