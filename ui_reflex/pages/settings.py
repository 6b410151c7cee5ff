"""`/settings`: the running gateway's live settings (retention, captures, require-auth, metrics), maintenance
(prune, compact) and the signed-in user's passkeys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import reflex as rx

from ui_reflex import browser, forms
from ui_reflex.api_client import ApiError, LiveSettings, PasskeyInfo
from ui_reflex.layout import page_shell
from ui_reflex.pages.keys import labelled
from ui_reflex.request_views import format_bytes
from ui_reflex.session import admin_api
from ui_reflex.widgets import error_callout, local_time


@dataclass(frozen=True)
class PasskeyView:
    id: int
    name: str
    created_at: str
    last_used: str


def passkey_view(p: PasskeyInfo) -> PasskeyView:
    return PasskeyView(p.id, p.name, p.created_at.isoformat(), p.last_used_at.isoformat() if p.last_used_at else "")


class SettingsState(rx.State):
    retention_days: str = ""
    capture_enabled: bool = True
    capture_max_bytes: str = ""
    require_auth: bool = True
    protect_metrics: bool = False
    form_version: int = 0
    loaded: bool = False  # the form shows once its values are in: typing into a form about to reset is lost
    passkeys: list[PasskeyView] = []
    passkey_busy: bool = False
    maintenance_busy: bool = False
    message: str = ""
    error: str = ""
    load_error: str = ""

    @rx.event
    async def load(self):
        self.message = self.error = ""
        self.loaded = False
        yield
        try:
            async with admin_api(self) as api:
                self._show(await api.live_settings())
                self.passkeys = [passkey_view(p) for p in await api.passkeys()]
            self.load_error = ""
            self.loaded = True
        except ApiError as exc:
            self.load_error = f"Could not load the settings: {exc.message}"

    @rx.event
    async def save(self, form: dict[str, Any]):
        self.message = self.error = ""
        try:
            changes = {
                "retention_days": forms.required_int(form, "retention_days", "Keep requests for (days)", maximum=3650),
                "capture_enabled": forms.checked(form, "capture_enabled"),
                "capture_max_bytes": forms.required_int(
                    form, "capture_max_bytes", "Capture limit (bytes)", maximum=16 * 1024 * 1024
                ),
                "require_auth": forms.checked(form, "require_auth"),
                "protect_metrics": forms.checked(form, "protect_metrics"),
            }
        except forms.FormProblem as exc:
            self.error = str(exc)
            return
        try:
            async with admin_api(self) as api:
                self._show(await api.change_settings(**changes))
        except ApiError as exc:
            self.error = f"Not saved: {exc.explanation}"
            return
        self.message = "Saved: the gateway uses the new settings now."

    @rx.event
    async def prune(self, form: dict[str, Any]):
        self.message = self.error = ""
        try:
            days = forms.optional_int(form, "older_than_days", "Older than (days)")
            if forms.text(form, "older_than_days") == "0":
                days = 0
        except forms.FormProblem as exc:
            self.error = str(exc)
            return
        self.maintenance_busy = True
        try:
            async with admin_api(self) as api:
                report = await api.prune(days)
        except ApiError as exc:
            self.error = f"Prune failed: {exc.message}"
            return
        finally:
            self.maintenance_busy = False
        self.message = (
            f"Pruned {report.request_logs} requests, {report.model_events} model events and "
            f"{report.sessions} expired sign-ins."
        )

    @rx.event
    async def compact(self):
        self.message = self.error = ""
        self.maintenance_busy = True
        try:
            async with admin_api(self) as api:
                report = await api.compact()
        except ApiError as exc:
            self.error = f"Compact failed: {exc.message}"
            return
        finally:
            self.maintenance_busy = False
        self.message = (
            f"Compacted the {report.dialect} database in {report.seconds:.1f} s: "
            f"{format_bytes(report.size_before)} → {format_bytes(report.size_after)}."
        )

    @rx.event
    def add_passkey(self, form: dict[str, Any]):
        self.message = self.error = ""
        self.passkey_busy = True
        name = forms.text(form, "passkey_name")
        return browser.call(browser.PASSKEY_REGISTER, name, callback=SettingsState.passkey_added)

    @rx.event
    async def passkey_added(self, result: dict[str, Any]):
        self.passkey_busy = False
        if not result or not result.get("ok"):
            self.error = f"The passkey was not added: {(result or {}).get('message') or 'unknown error'}"
            return
        self.message = "Passkey added: you can sign in with it from now on."
        await self._passkeys()

    @rx.event
    async def remove_passkey(self, passkey_id: int):
        self.message = self.error = ""
        try:
            async with admin_api(self) as api:
                await api.delete_passkey(passkey_id)
        except ApiError as exc:
            self.error = f"Could not remove the passkey: {exc.message}"
            return
        self.message = "Passkey removed."
        await self._passkeys()

    async def _passkeys(self) -> None:
        try:
            async with admin_api(self) as api:
                self.passkeys = [passkey_view(p) for p in await api.passkeys()]
        except ApiError as exc:
            self.error = f"Could not list the passkeys: {exc.message}"

    def _show(self, settings: LiveSettings) -> None:
        self.retention_days = str(settings.retention_days)
        self.capture_enabled = settings.capture_enabled
        self.capture_max_bytes = str(settings.capture_max_bytes)
        self.require_auth = settings.require_auth
        self.protect_metrics = settings.protect_metrics
        self.form_version += 1


def _switch_row(name: str, label: str, hint: str, checked: rx.Var[bool]) -> rx.Component:
    return rx.hstack(
        rx.switch(name=name, default_checked=checked, id=f"setting-{name}"),
        rx.vstack(
            rx.text(label, size="2", weight="medium"), rx.text(hint, size="1", color=rx.color("gray", 10)), spacing="0"
        ),
        align="start",
        spacing="3",
    )


def _settings_form() -> rx.Component:
    s = SettingsState
    return rx.card(
        rx.form(
            rx.vstack(
                rx.heading("Gateway", size="4"),
                rx.grid(
                    labelled(
                        "Keep requests for (days)",
                        rx.input(
                            name="retention_days",
                            type="number",
                            min=0,
                            default_value=s.retention_days,
                            id="retention-days",
                        ),
                        "0 keeps them forever; older rows are deleted every hour.",
                    ),
                    labelled(
                        "Capture limit per body (bytes)",
                        rx.input(name="capture_max_bytes", type="number", min=0, default_value=s.capture_max_bytes),
                        "How much of each request and response body is kept for the detail view.",
                    ),
                    columns=rx.breakpoints(initial="1", sm="2"),
                    spacing="4",
                    width="100%",
                ),
                _switch_row(
                    "capture_enabled",
                    "Capture bodies",
                    "Keep headers and the start of each body, redacted.",
                    s.capture_enabled,
                ),
                _switch_row(
                    "require_auth",
                    "Require API keys",
                    "Clients must send a Switchyard API key. Off: anyone who can reach the port can use it.",
                    s.require_auth,
                ),
                _switch_row(
                    "protect_metrics", "Protect /metrics", "Prometheus must send an admin key.", s.protect_metrics
                ),
                rx.button("Save settings", type="submit", id="save-settings"),
                spacing="4",
                width="100%",
            ),
            on_submit=s.save,
            reset_on_submit=False,
            key=s.form_version,
        ),
        width="100%",
    )


def _maintenance() -> rx.Component:
    s = SettingsState
    return rx.card(
        rx.vstack(
            rx.heading("Maintenance", size="4"),
            rx.form(
                rx.hstack(
                    rx.input(name="older_than_days", type="number", min=0, placeholder="retention", width="140px"),
                    rx.button("Prune now", type="submit", variant="soft", loading=s.maintenance_busy, id="prune"),
                    align="center",
                    spacing="2",
                ),
                on_submit=s.prune,
                reset_on_submit=True,
            ),
            rx.text(
                "Deletes requests and model events older than the retention (or the days given; 0 deletes all).",
                size="1",
                color=rx.color("gray", 10),
            ),
            rx.button("Compact database", variant="soft", on_click=s.compact, loading=s.maintenance_busy, id="compact"),
            rx.text(
                "Gives the space of deleted rows back to the disk (SQLite VACUUM).",
                size="1",
                color=rx.color("gray", 10),
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
    )


def _passkeys() -> rx.Component:
    s = SettingsState
    return rx.card(
        rx.vstack(
            rx.heading("Passkeys", size="4"),
            rx.text(
                "Sign in with a fingerprint, face or security key instead of the password.",
                size="2",
                color=rx.color("gray", 11),
            ),
            rx.foreach(
                s.passkeys,
                lambda p: rx.hstack(
                    rx.icon("fingerprint", size=16),
                    rx.vstack(
                        rx.text(p.name, size="2", weight="medium"),
                        rx.text(
                            "added ",
                            local_time(p.created_at, "YYYY-MM-DD"),
                            " · last used ",
                            rx.cond(p.last_used != "", local_time(p.last_used, "YYYY-MM-DD HH:mm"), "never"),
                            size="1",
                            color=rx.color("gray", 10),
                        ),
                        spacing="0",
                    ),
                    rx.spacer(),
                    rx.button("Remove", size="1", variant="soft", color_scheme="red", on_click=s.remove_passkey(p.id)),
                    width="100%",
                    align="center",
                    data_passkey=p.name,
                ),
            ),
            rx.form(
                rx.hstack(
                    rx.input(name="passkey_name", placeholder="name, e.g. laptop", id="passkey-name"),
                    rx.button(
                        rx.icon("plus", size=14),
                        "Add a passkey",
                        type="submit",
                        loading=s.passkey_busy,
                        id="add-passkey",
                    ),
                    spacing="2",
                    wrap="wrap",
                ),
                on_submit=s.add_passkey,
                reset_on_submit=True,
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
    )


def settings_page() -> rx.Component:
    s = SettingsState
    return page_shell(
        "Settings",
        error_callout(s.load_error),
        error_callout(s.error),
        rx.cond(
            s.message != "",
            rx.callout(s.message, icon="check", color_scheme="green", width="100%", id="settings-message"),
        ),
        rx.cond(s.loaded, _settings_form(), rx.spinner()),
        rx.grid(_maintenance(), _passkeys(), columns=rx.breakpoints(initial="1", lg="2"), spacing="4", width="100%"),
    )
