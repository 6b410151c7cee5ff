"""`/keys`: the API keys — create one (its secret is shown once, with a copy button), see limits, allow-lists
and state at a glance; each managed key opens its own page (`/keys/{id}`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import reflex as rx

from ui_reflex import forms
from ui_reflex.api_client import ApiError, ApiKeyInfo, KeyDraft
from ui_reflex.layout import page_shell
from ui_reflex.session import admin_api
from ui_reflex.widgets import empty_state, error_callout, local_time

STATE_COLORS = {"active": "green", "revoked": "red", "expired": "amber"}


@dataclass(frozen=True)
class KeyRow:
    id: str
    name: str
    prefix: str
    source: str
    state: str
    state_color: str
    limits: str
    models: str
    scopes: str
    last_used: str  # ISO time or ""
    href: str


def limits_text(key: ApiKeyInfo) -> str:
    parts = []
    if key.rpm_limit:
        parts.append(f"{key.rpm_limit} req/min")
    if key.tpm_limit:
        parts.append(f"{key.tpm_limit:,} tok/min")
    return ", ".join(parts) or "unlimited"


def key_row(key: ApiKeyInfo) -> KeyRow:
    return KeyRow(
        id=key.id,
        name=key.name,
        prefix=key.prefix + "…",
        source=key.source,
        state=key.state,
        state_color=STATE_COLORS.get(key.state, "gray"),
        limits=limits_text(key),
        models=", ".join(key.allowed_models) or "all models",
        scopes=", ".join(key.scopes),
        last_used=key.last_used_at.isoformat() if key.last_used_at else "",
        href=f"/keys/{key.id}" if key.source == "database" else "",
    )


def draft_from_form(form: dict[str, Any]) -> KeyDraft:
    """A new key from the create form; raises FormProblem naming the field that cannot be read."""
    name = forms.text(form, "name")
    if not name:
        raise forms.FormProblem("give the key a name (who or what uses it)")
    days = forms.optional_int(form, "expires_days", "Expires after (days)", minimum=1)
    return KeyDraft(
        name=name,
        rpm_limit=forms.optional_int(form, "rpm_limit", "Requests per minute"),
        tpm_limit=forms.optional_int(form, "tpm_limit", "Tokens per minute"),
        allowed_models=forms.items(forms.text(form, "allowed_models")),
        allowed_relays=forms.items(forms.text(form, "allowed_relays")),
        system_prompt=forms.text(form, "system_prompt") or None,
        scopes=("inference", "admin") if forms.checked(form, "admin") else ("inference",),
        expires_at=datetime.now(UTC) + timedelta(days=days) if days else None,
    )


class KeysState(rx.State):
    keys: list[KeyRow] = []
    load_error: str = ""
    form_error: str = ""
    creating: bool = False
    dialog_open: bool = False
    new_secret: str = ""
    new_name: str = ""

    @rx.event
    async def load(self):
        self.new_secret = self.new_name = ""
        await self._refresh()

    @rx.event
    def set_dialog_open(self, value: bool):
        self.dialog_open = value
        if value:
            self.form_error = ""

    @rx.event
    async def create(self, form: dict[str, Any]):
        self.form_error = ""
        try:
            draft = draft_from_form(form)
        except forms.FormProblem as exc:
            self.form_error = str(exc)
            return
        self.creating = True
        try:
            async with admin_api(self) as api:
                created = await api.create_key(draft)
        except ApiError as exc:
            self.form_error = f"The key was not created: {exc.explanation}"
            return
        finally:
            self.creating = False
        self.new_secret, self.new_name, self.dialog_open = created.secret, created.key.name, False
        await self._refresh()

    @rx.event
    def dismiss_secret(self):
        self.new_secret = self.new_name = ""

    async def _refresh(self) -> None:
        try:
            async with admin_api(self) as api:
                self.keys = [key_row(k) for k in await api.list_keys()]
            self.load_error = ""
        except ApiError as exc:
            self.load_error = f"Could not list the keys: {exc.message}"


# --------------------------------------------------------------------------- components


def labelled(label: str, control: rx.Component, hint: str = "") -> rx.Component:
    return rx.vstack(
        rx.text(label, size="2", weight="medium"),
        control,
        rx.cond(hint != "", rx.text(hint, size="1", color=rx.color("gray", 10))),
        spacing="1",
        width="100%",
    )


def key_fields(defaults: Any = None) -> list[rx.Component]:
    """The limit, allow-list and prompt fields shared by the create dialog and the key's own page."""

    def default(name: str) -> Any:
        return getattr(defaults, name) if defaults is not None else ""

    return [
        rx.grid(
            labelled(
                "Requests per minute",
                rx.input(name="rpm_limit", type="number", min=0, default_value=default("rpm"), placeholder="unlimited"),
            ),
            labelled(
                "Tokens per minute",
                rx.input(name="tpm_limit", type="number", min=0, default_value=default("tpm"), placeholder="unlimited"),
            ),
            columns="2",
            spacing="3",
            width="100%",
        ),
        labelled(
            "Allowed models",
            rx.text_area(name="allowed_models", default_value=default("models"), placeholder="all models", rows="2"),
            "Model ids or globs (qwen*, re:^llama), one per line or comma separated; empty allows every model.",
        ),
        labelled(
            "Allowed MCP relays",
            rx.text_area(name="allowed_relays", default_value=default("relays"), placeholder="none", rows="2"),
            "Relay slugs or globs; empty allows none, * allows all.",
        ),
        labelled(
            "System prompt",
            rx.text_area(
                name="system_prompt",
                default_value=default("system_prompt"),
                rows="3",
                placeholder="prepended to every chat request made with this key",
            ),
        ),
    ]


def _create_dialog() -> rx.Component:
    s = KeysState
    return rx.dialog.root(
        rx.dialog.trigger(rx.button(rx.icon("plus", size=16), "New key", id="new-key")),
        rx.dialog.content(
            rx.dialog.title("New API key"),
            rx.form(
                rx.vstack(
                    labelled(
                        "Name",
                        rx.input(name="name", placeholder="e.g. laptop, open-webui", id="key-name", auto_focus=True),
                    ),
                    *key_fields(),
                    rx.grid(
                        labelled(
                            "Expires after (days)",
                            rx.input(name="expires_days", type="number", min=1, placeholder="never"),
                        ),
                        labelled(
                            "Admin",
                            rx.hstack(
                                rx.checkbox(name="admin"), rx.text("also opens the admin API", size="2"), align="center"
                            ),
                        ),
                        columns="2",
                        spacing="3",
                        width="100%",
                    ),
                    error_callout(s.form_error),
                    rx.hstack(
                        rx.dialog.close(rx.button("Cancel", variant="soft", color_scheme="gray", type="button")),
                        rx.button("Create key", type="submit", loading=s.creating, id="create-key"),
                        justify="end",
                        width="100%",
                    ),
                    spacing="3",
                ),
                on_submit=s.create,
                reset_on_submit=False,
            ),
            max_width="min(560px, 94vw)",
        ),
        open=s.dialog_open,
        on_open_change=s.set_dialog_open,
    )


def secret_callout(secret: rx.Var[str], name: rx.Var[str], on_dismiss: Any) -> rx.Component:
    """The one time a key's secret is shown: copy it now."""
    return rx.cond(
        secret != "",
        rx.callout.root(
            rx.callout.icon(rx.icon("key-round")),
            rx.vstack(
                rx.text(
                    rx.text.strong("Key “", name, "” created."),
                    " Copy its secret now: it is shown only once.",
                    size="2",
                ),
                rx.hstack(
                    rx.code(secret, id="new-key-secret", word_break="break-all", size="3"),
                    rx.icon_button(
                        rx.icon("copy", size=16),
                        variant="soft",
                        aria_label="Copy the secret",
                        on_click=[rx.set_clipboard(secret), rx.toast.success("Secret copied")],
                        id="copy-secret",
                    ),
                    align="center",
                    spacing="2",
                    wrap="wrap",
                ),
                rx.button("I have stored it", size="1", variant="soft", on_click=on_dismiss),
                spacing="2",
            ),
            color_scheme="green",
            width="100%",
        ),
    )


def _key_row(key: rx.Var[KeyRow]) -> rx.Component:
    wide = {"display": ["none", "none", "table-cell"]}
    return rx.table.row(
        rx.table.cell(
            rx.cond(
                key.href != "", rx.link(key.name, href=key.href, weight="medium"), rx.text(key.name, weight="medium")
            ),
            rx.text(key.prefix, size="1", color=rx.color("gray", 10), font_family="monospace"),
        ),
        rx.table.cell(rx.badge(key.state, color_scheme=key.state_color, variant="soft")),
        rx.table.cell(key.limits, **wide),
        rx.table.cell(key.models, **wide),
        rx.table.cell(key.scopes, **wide),
        rx.table.cell(rx.cond(key.last_used != "", local_time(key.last_used, "MM-DD HH:mm"), "never"), **wide),
        rx.table.cell(rx.cond(key.source != "database", rx.badge(key.source, variant="outline"), "")),
        data_key=key.name,
    )


def keys_page() -> rx.Component:
    s = KeysState
    wide = {"display": ["none", "none", "table-cell"]}
    return page_shell(
        "API keys",
        error_callout(s.load_error),
        secret_callout(s.new_secret, s.new_name, s.dismiss_secret),
        rx.text(
            "Clients send a key as Authorization: Bearer <key> (OpenAI) or x-api-key (Anthropic). "
            "Only a hash is stored; a lost secret cannot be shown again, create a new key instead.",
            size="2",
            color=rx.color("gray", 11),
        ),
        rx.cond(
            s.keys.length() > 0,
            rx.box(
                rx.table.root(
                    rx.table.header(
                        rx.table.row(
                            rx.table.column_header_cell("Name"),
                            rx.table.column_header_cell("State"),
                            rx.table.column_header_cell("Limits", **wide),
                            rx.table.column_header_cell("Models", **wide),
                            rx.table.column_header_cell("Scopes", **wide),
                            rx.table.column_header_cell("Last used", **wide),
                            rx.table.column_header_cell(""),
                        )
                    ),
                    rx.table.body(rx.foreach(s.keys, _key_row)),
                    variant="surface",
                    size="1",
                    width="100%",
                ),
                width="100%",
                overflow_x="auto",
            ),
            empty_state("No API keys yet. Create one for each client or person.", icon="key-round"),
        ),
        actions=_create_dialog(),
    )
