"""`/keys/{id}`: one API key — edit its limits, allow-lists and system prompt, see its usage by model, revoke or
delete it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import reflex as rx

from ui_reflex import forms
from ui_reflex.api_client import ApiError, ApiKeyInfo, KeyDraft, KeyUsage, NotFound
from ui_reflex.layout import page_shell
from ui_reflex.pages.keys import STATE_COLORS, key_fields, labelled, limits_text
from ui_reflex.request_views import format_cost, format_count
from ui_reflex.session import admin_api
from ui_reflex.widgets import error_callout, field_row, local_time

PREFIX = "/keys/"


@dataclass(frozen=True)
class UsageRow:
    model: str
    requests: str
    errors: str
    tokens: str
    cost: str


def usage_rows(usage: KeyUsage) -> list[UsageRow]:
    return [
        UsageRow(
            model=m.model,
            requests=format_count(m.requests),
            errors=format_count(m.errors),
            tokens=f"{format_count(m.prompt_tokens)} → {format_count(m.completion_tokens)}",
            cost=format_cost(m.cost_usd),
        )
        for m in usage.by_model
    ]


class KeyDetailState(rx.State):
    key_id: str = ""
    name: str = ""
    prefix: str = ""
    state: str = ""
    state_color: str = "gray"
    scopes: str = ""
    limits: str = ""
    created_at: str = ""
    expires_at: str = ""
    last_used: str = ""
    is_admin: bool = False
    # form defaults
    rpm: str = ""
    tpm: str = ""
    models: str = ""
    relays: str = ""
    system_prompt: str = ""
    form_version: int = 0
    loaded: bool = False  # the form shows once its values are in
    # usage
    usage: list[UsageRow] = []
    usage_total: str = ""
    load_error: str = ""
    form_error: str = ""
    message: str = ""
    confirm_delete: bool = False

    @rx.event
    async def load(self):
        self.key_id = self.router.url.path.removeprefix(PREFIX).strip("/")
        self.message = self.form_error = self.load_error = ""
        self.confirm_delete = False
        self.loaded = False
        yield
        try:
            async with admin_api(self) as api:
                self._show(await api.get_key(self.key_id))
                self.loaded = True
                usage = await api.key_usage(self.key_id)
            self.usage = usage_rows(usage)
            self.usage_total = (
                f"{format_count(usage.requests)} requests, {format_count(usage.errors)} failed, "
                f"{format_count(usage.total_tokens)} tokens, {format_cost(usage.cost_usd)}"
            )
        except NotFound:
            self.load_error = f"There is no API key {self.key_id!r}."
        except ApiError as exc:
            self.load_error = f"Could not load the key: {exc.message}"

    @rx.event
    async def save(self, form: dict[str, Any]):
        self.form_error = self.message = ""
        try:
            name = forms.text(form, "name")
            if not name:
                raise forms.FormProblem("the key needs a name")
            draft = KeyDraft(
                name=name,
                rpm_limit=forms.optional_int(form, "rpm_limit", "Requests per minute"),
                tpm_limit=forms.optional_int(form, "tpm_limit", "Tokens per minute"),
                allowed_models=forms.items(forms.text(form, "allowed_models")),
                allowed_relays=forms.items(forms.text(form, "allowed_relays")),
                system_prompt=forms.text(form, "system_prompt") or None,
                scopes=("inference", "admin") if forms.checked(form, "admin") else ("inference",),
            )
        except forms.FormProblem as exc:
            self.form_error = str(exc)
            return
        try:
            async with admin_api(self) as api:
                current = await api.get_key(self.key_id)
                # keep the expiry: the form does not edit it
                draft = KeyDraft(**{**draft.__dict__, "expires_at": current.expires_at})
                self._show(await api.update_key(self.key_id, draft))
            self.message = "Saved. The gateway applies it to the next request."
        except ApiError as exc:
            self.form_error = f"Not saved: {exc.explanation}"

    @rx.event
    async def revoke(self):
        try:
            async with admin_api(self) as api:
                self._show(await api.revoke_key(self.key_id))
            self.message = "Revoked: requests with this key are refused from now on."
        except ApiError as exc:
            self.form_error = f"Could not revoke the key: {exc.message}"

    @rx.event
    def ask_delete(self):
        self.confirm_delete = True

    @rx.event
    def set_confirm_delete(self, value: bool):
        self.confirm_delete = value

    @rx.event
    async def delete(self):
        try:
            async with admin_api(self) as api:
                await api.delete_key(self.key_id)
        except ApiError as exc:
            self.form_error, self.confirm_delete = f"Could not delete the key: {exc.message}", False
            return None
        return rx.redirect("/keys")

    def _show(self, key: ApiKeyInfo) -> None:
        self.name, self.prefix = key.name, key.prefix + "…"
        self.state, self.state_color = key.state, STATE_COLORS.get(key.state, "gray")
        self.scopes, self.limits = ", ".join(key.scopes), limits_text(key)
        self.is_admin = "admin" in key.scopes
        self.created_at = key.created_at.isoformat() if key.created_at else ""
        self.expires_at = key.expires_at.isoformat() if key.expires_at else ""
        self.last_used = key.last_used_at.isoformat() if key.last_used_at else ""
        self.rpm = str(key.rpm_limit or "")
        self.tpm = str(key.tpm_limit or "")
        self.models = "\n".join(key.allowed_models)
        self.relays = "\n".join(key.allowed_relays)
        self.system_prompt = key.system_prompt or ""
        self.form_version += 1  # remount the form with the new defaults


def _when(value: rx.Var[str], empty: str) -> rx.Component:
    return rx.cond(value != "", rx.text(local_time(value, "YYYY-MM-DD HH:mm"), size="2"), rx.text(empty, size="2"))


def _usage() -> rx.Component:
    s = KeyDetailState
    return rx.vstack(
        rx.heading("Usage by model", size="4"),
        rx.text(s.usage_total, size="2", color=rx.color("gray", 11)),
        rx.cond(
            s.usage.length() > 0,
            rx.box(
                rx.table.root(
                    rx.table.header(
                        rx.table.row(
                            rx.table.column_header_cell("Model"),
                            rx.table.column_header_cell("Requests"),
                            rx.table.column_header_cell("Errors"),
                            rx.table.column_header_cell("Tokens in → out"),
                            rx.table.column_header_cell("Cost"),
                        )
                    ),
                    rx.table.body(
                        rx.foreach(
                            s.usage,
                            lambda u: rx.table.row(
                                rx.table.cell(u.model),
                                rx.table.cell(u.requests),
                                rx.table.cell(u.errors),
                                rx.table.cell(u.tokens, white_space="nowrap"),
                                rx.table.cell(u.cost),
                                data_usage_model=u.model,
                            ),
                        )
                    ),
                    variant="surface",
                    size="1",
                    width="100%",
                ),
                width="100%",
                overflow_x="auto",
            ),
            rx.text("No requests with this key yet.", size="2", color=rx.color("gray", 10)),
        ),
        spacing="2",
        width="100%",
    )


def _delete_dialog() -> rx.Component:
    s = KeyDetailState
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Delete this key?"),
            rx.alert_dialog.description(
                "Clients using it are refused at once. Its requests stay in the log.", size="2"
            ),
            rx.hstack(
                rx.alert_dialog.cancel(rx.button("Cancel", variant="soft", color_scheme="gray")),
                rx.alert_dialog.action(rx.button("Delete", color_scheme="red", on_click=s.delete, id="confirm-delete")),
                justify="end",
                spacing="3",
                margin_top="12px",
            ),
        ),
        open=s.confirm_delete,
        on_open_change=s.set_confirm_delete,
    )


def key_detail_page() -> rx.Component:
    s = KeyDetailState
    return page_shell(
        "API key",
        rx.link(
            rx.hstack(rx.icon("arrow-left", size=14), "All keys", align="center", spacing="1"), href="/keys", size="2"
        ),
        error_callout(s.load_error),
        rx.hstack(
            rx.heading(s.name, size="6", id="key-title"),
            rx.badge(s.state, color_scheme=s.state_color, variant="soft", size="2", data_state=s.state),
            rx.code(s.prefix, variant="ghost"),
            align="center",
            spacing="3",
            wrap="wrap",
        ),
        rx.card(
            rx.vstack(
                field_row("Scopes", s.scopes),
                field_row("Limits", s.limits),
                field_row("Created", _when(s.created_at, "—")),
                field_row("Expires", _when(s.expires_at, "never")),
                field_row("Last used", _when(s.last_used, "never")),
                spacing="2",
                width="100%",
            ),
            width="100%",
        ),
        error_callout(s.form_error),
        rx.cond(s.message != "", rx.callout(s.message, icon="check", color_scheme="green", width="100%")),
        rx.cond(
            s.loaded,
            rx.card(
                rx.form(
                    rx.vstack(
                        rx.heading("Settings", size="4"),
                        labelled("Name", rx.input(name="name", default_value=s.name)),
                        *key_fields(s),
                        rx.hstack(
                            rx.checkbox(name="admin", default_checked=s.is_admin),
                            rx.text("Admin: this key also opens the admin API", size="2"),
                            align="center",
                        ),
                        rx.button("Save", type="submit", id="save-key"),
                        spacing="3",
                        width="100%",
                    ),
                    on_submit=s.save,
                    reset_on_submit=False,
                    key=s.form_version,
                ),
                width="100%",
            ),
            rx.spinner(),
        ),
        _usage(),
        rx.hstack(
            rx.button(
                "Revoke",
                variant="soft",
                color_scheme="amber",
                on_click=s.revoke,
                disabled=s.state == "revoked",
                id="revoke-key",
            ),
            rx.button("Delete", variant="soft", color_scheme="red", on_click=s.ask_delete, id="delete-key"),
            spacing="3",
        ),
        _delete_dialog(),
    )
