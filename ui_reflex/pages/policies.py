"""`/policies`: the routing rules (ordered: the first that matches decides), the credential vault (secrets are
write-only: typed in, never shown again) and MCP relays with their Claude Code snippet."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import reflex as rx

from ui_reflex import forms
from ui_reflex.api_client import (
    ApiError,
    CredentialInfo,
    McpRelayInfo,
    PolicyRule,
    RouteTarget,
    RuleMatch,
)
from ui_reflex.layout import page_shell
from ui_reflex.pages.keys import labelled
from ui_reflex.session import admin_api
from ui_reflex.widgets import code_view, empty_state, error_callout, local_time

ACTIONS = ("continue", "rewrite", "reject", "route")
TARGET_KINDS = ("local", "peer", "upstream")


# --------------------------------------------------------------------------- views


@dataclass(frozen=True)
class RuleView:
    id: str
    number: int
    name: str
    enabled: bool
    match: str
    action: str
    bindings: str
    hits: int
    first: bool
    last: bool


def match_text(match: RuleMatch) -> str:
    parts = []
    if match.path:
        parts.append(f"path {match.path}")
    if match.model:
        parts.append(f"model {match.model}")
    if match.key_ids:
        parts.append("key " + " or ".join(match.key_ids))
    parts.extend(f"header {h.name} ~ {h.pattern}" for h in match.headers)
    return ", ".join(parts) or "every request"


def action_text(rule: PolicyRule) -> str:
    if rule.action == "rewrite":
        return f"rewrite the model to {rule.rewrite_model}"
    if rule.action == "reject":
        return f"reject with {rule.reject_status}: {rule.reject_message}"
    if rule.action == "route" and rule.target is not None:
        t = rule.target
        where = {
            "local": f"local model {t.value or '(the requested one)'}",
            "peer": f"peer {t.value}",
            "upstream": f"{t.base_url}" + (f" ({t.value})" if t.value else ""),
        }.get(t.kind, t.kind)
        return f"route to {where}" + (f" as {t.model}" if t.model else "")
    return "continue (apply bindings and limits, then serve as asked)"


def rule_views(rules: list[PolicyRule]) -> list[RuleView]:
    return [
        RuleView(
            id=r.id,
            number=i + 1,
            name=r.name or r.id,
            enabled=r.enabled,
            match=match_text(r.match),
            action=action_text(r),
            bindings=", ".join(f"{b.credential} → {b.header or 'placeholder'}" for b in r.bindings),
            hits=r.hits,
            first=i == 0,
            last=i == len(rules) - 1,
        )
        for i, r in enumerate(rules)
    ]


def rule_from_form(rule_id: str, form: dict[str, Any]) -> PolicyRule:
    """A rule from the editor's fields; raises FormProblem for what cannot be read (the API checks the rest)."""
    action = forms.text(form, "action") or "continue"
    target = None
    if action == "route":
        target = RouteTarget(
            kind=forms.text(form, "target_kind") or "local",
            value=forms.text(form, "target_value"),
            model=forms.text(form, "target_model"),
            base_url=forms.text(form, "target_base_url"),
            auth_passthrough=forms.checked(form, "auth_passthrough"),
            insecure_tls=forms.checked(form, "insecure_tls"),
        )
    return PolicyRule(
        id=rule_id,
        name=forms.text(form, "name"),
        enabled=forms.checked(form, "enabled"),
        match=RuleMatch(
            path=forms.text(form, "match_path"),
            model=forms.text(form, "match_model"),
            key_ids=forms.items(forms.text(form, "match_keys")),
            headers=forms.header_conditions_from_lines(forms.text(form, "match_headers")),
        ),
        action=action,
        rewrite_model=forms.text(form, "rewrite_model"),
        reject_status=forms.required_int(form, "reject_status", "Reject status", minimum=100, maximum=599)
        if action == "reject"
        else 403,
        reject_message=forms.text(form, "reject_message") or "request rejected by policy",
        target=target,
        bindings=forms.bindings_from_lines(forms.text(form, "bindings")),
        max_body_bytes=forms.optional_int(form, "max_body_bytes", "Largest body (bytes)"),
    )


@dataclass(frozen=True)
class CredentialView:
    slug: str
    name: str
    description: str
    used_by: str
    updated_at: str
    last_used: str
    problem: str


def credential_view(c: CredentialInfo) -> CredentialView:
    users = [f"rule {r}" for r in c.rules] + [f"relay {r}" for r in c.relays]
    return CredentialView(
        slug=c.slug,
        name=c.name,
        description=c.description,
        used_by=", ".join(users) or "nothing yet",
        updated_at=c.updated_at.isoformat(),
        last_used=c.last_used_at.isoformat() if c.last_used_at else "",
        problem=c.problem or "",
    )


@dataclass(frozen=True)
class RelayView:
    slug: str
    name: str
    upstream_url: str
    enabled: bool
    bindings: str
    snippet: str
    command: str


def relay_view(relay: McpRelayInfo, snippet: dict[str, Any], origin: str) -> RelayView:
    """A relay with its Claude Code snippet, pointed at the address the browser uses for this gateway."""
    url = origin.rstrip("/") + relay.path if origin else ""
    for server in (snippet.get("mcpServers") or {}).values():
        if url and isinstance(server, dict):
            server["url"] = url
    url = url or next(iter((snippet.get("mcpServers") or {}).values()), {}).get("url", relay.path)
    return RelayView(
        slug=relay.slug,
        name=relay.name or relay.slug,
        upstream_url=relay.upstream_url,
        enabled=relay.enabled,
        bindings=forms.bindings_to_lines(relay.bindings) or "none",
        snippet=json.dumps(snippet, indent=2),
        command=f'claude mcp add --transport http {relay.slug} {url} --header "x-switchyard-api-key: $SWITCHYARD_API_KEY"',
    )


# --------------------------------------------------------------------------- state


class PoliciesState(rx.State):
    tab: str = "rules"
    rules: list[RuleView] = []
    credentials: list[CredentialView] = []
    relays: list[RelayView] = []
    load_error: str = ""
    message: str = ""
    error: str = ""
    # rule editor
    editor_open: bool = False
    editing_id: str = ""
    action: str = "continue"
    target_kind: str = "local"
    defaults: dict[str, str] = {}
    enabled_default: bool = True
    passthrough_default: bool = False
    insecure_default: bool = False
    form_version: int = 0
    form_error: str = ""
    # vault
    replacing: str = ""
    confirm_credential: str = ""

    _rules: list[PolicyRule] = []

    @rx.event
    async def load(self):
        self.message = self.error = ""
        await self._refresh()

    @rx.event
    def set_tab(self, value: str):
        self.tab = value

    # ---- rules -------------------------------------------------------------

    @rx.event
    def new_rule(self):
        self._open_editor(None)

    @rx.event
    def edit_rule(self, rule_id: str):
        self._open_editor(next((r for r in self._rules if r.id == rule_id), None))

    @rx.event
    def set_editor_open(self, value: bool):
        self.editor_open = value

    @rx.event
    def set_action(self, value: str):
        self.action = value

    @rx.event
    def set_target_kind(self, value: str):
        self.target_kind = value

    @rx.event
    async def save_rule(self, form: dict[str, Any]):
        self.form_error = ""
        form = {**form, "action": self.action, "target_kind": self.target_kind}
        try:
            rule = rule_from_form(self.editing_id, form)
        except forms.FormProblem as exc:
            self.form_error = str(exc)
            return
        try:
            async with admin_api(self) as api:
                saved = await (api.update_rule(rule) if self.editing_id else api.create_rule(rule))
        except ApiError as exc:
            self.form_error = f"Not saved: {exc.explanation}"
            return
        self.editor_open = False
        self.message = f"Rule {saved.name or saved.id} saved; it applies to the next request."
        await self._refresh()

    @rx.event
    async def move_rule(self, rule_id: str, offset: int):
        ids = [r.id for r in self._rules]
        if rule_id not in ids:
            return
        index = ids.index(rule_id)
        target = min(max(index + offset, 0), len(ids) - 1)
        ids.insert(target, ids.pop(index))
        await self._call(lambda api: api.reorder_rules(ids), "Order saved.")

    @rx.event
    async def toggle_rule(self, rule_id: str, enabled: bool):
        await self._call(lambda api: api.set_rule_enabled(rule_id, enabled), "")

    @rx.event
    async def delete_rule(self, rule_id: str):
        await self._call(lambda api: api.delete_rule(rule_id), f"Rule {rule_id} deleted.")

    # ---- vault -------------------------------------------------------------

    @rx.event
    async def add_credential(self, form: dict[str, Any]):
        slug, secret = forms.text(form, "slug"), str(form.get("secret") or "")
        if not slug or not secret:
            self.error = "A credential needs a slug and a secret."
            return
        await self._call(
            lambda api: api.create_credential(
                slug, secret, name=forms.text(form, "name"), description=forms.text(form, "description")
            ),
            f"Credential {slug} stored (encrypted; its value is never shown again).",
        )

    @rx.event
    def start_replace(self, slug: str):
        self.replacing = slug

    @rx.event
    def set_replacing_open(self, value: bool):
        if not value:
            self.replacing = ""

    @rx.event
    async def replace_secret(self, form: dict[str, Any]):
        slug, secret = self.replacing, str(form.get("secret") or "")
        if not secret:
            self.error = "Type the new secret."
            return
        self.replacing = ""
        await self._call(lambda api: api.replace_credential_secret(slug, secret), f"The secret of {slug} was replaced.")

    @rx.event
    async def delete_credential(self, slug: str):
        try:
            async with admin_api(self) as api:
                await api.delete_credential(slug)
        except ApiError as exc:
            if exc.status == 409:
                self.confirm_credential, self.error = slug, exc.message
            else:
                self.error = exc.message
            return
        self.message = f"Credential {slug} deleted."
        await self._refresh()

    @rx.event
    def keep_credential(self):
        self.confirm_credential, self.error = "", ""

    @rx.event
    async def delete_credential_anyway(self):
        slug, self.confirm_credential = self.confirm_credential, ""
        await self._call(lambda api: api.delete_credential(slug, confirm=True), f"Credential {slug} deleted.")

    # ---- relays ------------------------------------------------------------

    @rx.event
    async def add_relay(self, form: dict[str, Any]):
        try:
            bindings = forms.bindings_from_lines(forms.text(form, "bindings"))
        except forms.FormProblem as exc:
            self.error = str(exc)
            return
        slug = forms.text(form, "slug")
        await self._call(
            lambda api: api.create_relay(
                slug, forms.text(form, "upstream_url"), name=forms.text(form, "name"), bindings=bindings
            ),
            f"Relay {slug} added: give a key access to it with the key's allowed relays.",
        )

    @rx.event
    async def toggle_relay(self, slug: str, enabled: bool):
        await self._call(lambda api: api.set_relay_enabled(slug, enabled), "")

    @rx.event
    async def delete_relay(self, slug: str):
        await self._call(lambda api: api.delete_relay(slug), f"Relay {slug} deleted.")

    # ---- internals ---------------------------------------------------------

    def _open_editor(self, rule: PolicyRule | None) -> None:
        rule = rule or PolicyRule(id="")
        target = rule.target or RouteTarget(kind="local")
        self.editing_id = rule.id
        self.action, self.target_kind = rule.action, target.kind
        self.enabled_default = rule.enabled
        self.passthrough_default, self.insecure_default = target.auth_passthrough, target.insecure_tls
        self.defaults = {
            "name": rule.name,
            "match_path": rule.match.path,
            "match_model": rule.match.model,
            "match_keys": ", ".join(rule.match.key_ids),
            "match_headers": forms.header_conditions_to_lines(rule.match.headers),
            "rewrite_model": rule.rewrite_model,
            "reject_status": str(rule.reject_status),
            "reject_message": rule.reject_message,
            "target_value": target.value,
            "target_model": target.model,
            "target_base_url": target.base_url,
            "bindings": forms.bindings_to_lines(rule.bindings),
            "max_body_bytes": str(rule.max_body_bytes or ""),
        }
        self.form_error, self.editor_open = "", True
        self.form_version += 1

    async def _call(self, action: Any, message: str) -> bool:
        self.error = ""
        try:
            async with admin_api(self) as api:
                await action(api)
        except ApiError as exc:
            self.error = exc.explanation
            return False
        if message:
            self.message = message
        await self._refresh()
        return True

    async def _refresh(self) -> None:
        origin = self.router.url.origin
        try:
            async with admin_api(self) as api:
                self._rules = await api.list_rules()
                self.rules = rule_views(self._rules)
                self.credentials = [credential_view(c) for c in await api.list_credentials()]
                relays = await api.list_relays()
                self.relays = [relay_view(r, await api.relay_snippet(r.slug), origin) for r in relays]
            self.load_error = ""
        except ApiError as exc:
            self.load_error = f"Could not load the policies: {exc.message}"


# --------------------------------------------------------------------------- components


def _d(name: str) -> rx.Var:
    return PoliciesState.defaults[name].to(str)


def _rule_card(rule: rx.Var[RuleView]) -> rx.Component:
    s = PoliciesState
    return rx.card(
        rx.flex(
            rx.hstack(
                rx.badge(rule.number, variant="solid", radius="full"),
                rx.vstack(
                    rx.hstack(
                        rx.text(rule.name, weight="bold", size="3"),
                        rx.cond(~rule.enabled, rx.badge("off", color_scheme="gray")),
                        rx.text(rule.hits, " hits", size="1", color=rx.color("gray", 10)),
                        align="center",
                        spacing="2",
                        wrap="wrap",
                    ),
                    rx.text(rx.text.strong("When "), rule.match, size="2"),
                    rx.text(rx.text.strong("Then "), rule.action, size="2"),
                    rx.cond(rule.bindings != "", rx.text(rx.text.strong("Credentials "), rule.bindings, size="2")),
                    spacing="1",
                    min_width="0",
                ),
                align="start",
                spacing="3",
                flex="1",
                min_width="0",
            ),
            rx.hstack(
                rx.switch(checked=rule.enabled, on_change=lambda v: s.toggle_rule(rule.id, v), aria_label="Enabled"),
                rx.icon_button(
                    rx.icon("arrow-up", size=14),
                    variant="ghost",
                    disabled=rule.first,
                    on_click=s.move_rule(rule.id, -1),
                    aria_label="Move up",
                ),
                rx.icon_button(
                    rx.icon("arrow-down", size=14),
                    variant="ghost",
                    disabled=rule.last,
                    on_click=s.move_rule(rule.id, 1),
                    aria_label="Move down",
                ),
                rx.icon_button(
                    rx.icon("pencil", size=14), variant="ghost", on_click=s.edit_rule(rule.id), aria_label="Edit"
                ),
                rx.icon_button(
                    rx.icon("trash-2", size=14),
                    variant="ghost",
                    color_scheme="red",
                    on_click=s.delete_rule(rule.id),
                    aria_label="Delete",
                ),
                spacing="2",
                align="center",
            ),
            direction=rx.breakpoints(initial="column", sm="row"),
            gap="3",
            width="100%",
        ),
        width="100%",
        data_rule=rule.id,
    )


def _rule_editor() -> rx.Component:
    s = PoliciesState
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title(rx.cond(s.editing_id != "", "Edit rule", "New rule")),
            rx.form(
                rx.vstack(
                    rx.grid(
                        labelled("Name", rx.input(name="name", default_value=_d("name"))),
                        labelled("Enabled", rx.switch(name="enabled", default_checked=s.enabled_default)),
                        columns="2",
                        spacing="3",
                        width="100%",
                    ),
                    rx.heading("Match", size="3"),
                    rx.grid(
                        labelled(
                            "Path",
                            rx.input(
                                name="match_path", default_value=_d("match_path"), placeholder="/v1/chat/* or re:…"
                            ),
                        ),
                        labelled(
                            "Model",
                            rx.input(name="match_model", default_value=_d("match_model"), placeholder="gpt-* or re:…"),
                        ),
                        columns=rx.breakpoints(initial="1", sm="2"),
                        spacing="3",
                        width="100%",
                    ),
                    labelled(
                        "API key ids",
                        rx.input(
                            name="match_keys", default_value=_d("match_keys"), placeholder="key_… (comma separated)"
                        ),
                    ),
                    labelled(
                        "Headers",
                        rx.text_area(
                            name="match_headers",
                            default_value=_d("match_headers"),
                            rows="2",
                            placeholder="x-team: research",
                        ),
                        "name: pattern, one per line",
                    ),
                    rx.heading("Action", size="3"),
                    rx.select(list(ACTIONS), value=s.action, on_change=s.set_action, id="rule-action"),
                    rx.match(
                        s.action,
                        (
                            "rewrite",
                            labelled(
                                "Rewrite the model to",
                                rx.input(name="rewrite_model", default_value=_d("rewrite_model")),
                            ),
                        ),
                        (
                            "reject",
                            rx.grid(
                                labelled(
                                    "Status",
                                    rx.input(name="reject_status", type="number", default_value=_d("reject_status")),
                                ),
                                labelled(
                                    "Message", rx.input(name="reject_message", default_value=_d("reject_message"))
                                ),
                                columns="2",
                                spacing="3",
                                width="100%",
                            ),
                        ),
                        (
                            "route",
                            rx.vstack(
                                rx.select(
                                    list(TARGET_KINDS),
                                    value=s.target_kind,
                                    on_change=s.set_target_kind,
                                    id="rule-target-kind",
                                ),
                                labelled(
                                    "Target",
                                    rx.input(name="target_value", default_value=_d("target_value")),
                                    "local: a model id (empty: the requested one); peer: its id; upstream: a name for logs",
                                ),
                                rx.cond(
                                    s.target_kind == "upstream",
                                    labelled(
                                        "Base URL",
                                        rx.input(
                                            name="target_base_url",
                                            default_value=_d("target_base_url"),
                                            placeholder="https://api.anthropic.com",
                                        ),
                                    ),
                                ),
                                labelled(
                                    "Send as model",
                                    rx.input(
                                        name="target_model",
                                        default_value=_d("target_model"),
                                        placeholder="the requested model",
                                    ),
                                ),
                                rx.hstack(
                                    rx.checkbox(name="auth_passthrough", default_checked=s.passthrough_default),
                                    rx.text("Pass the client's own Authorization through", size="2"),
                                ),
                                rx.hstack(
                                    rx.checkbox(name="insecure_tls", default_checked=s.insecure_default),
                                    rx.text("Skip TLS certificate checks", size="2"),
                                ),
                                spacing="2",
                                width="100%",
                            ),
                        ),
                        rx.fragment(),
                    ),
                    labelled(
                        "Credentials to inject",
                        rx.text_area(name="bindings", default_value=_d("bindings"), rows="2"),
                        forms.BINDING_HELP,
                    ),
                    labelled(
                        "Largest request body (bytes)",
                        rx.input(
                            name="max_body_bytes",
                            type="number",
                            default_value=_d("max_body_bytes"),
                            placeholder="no limit",
                        ),
                    ),
                    error_callout(s.form_error),
                    rx.hstack(
                        rx.dialog.close(rx.button("Cancel", type="button", variant="soft", color_scheme="gray")),
                        rx.button("Save rule", type="submit", id="save-rule"),
                        justify="end",
                        width="100%",
                    ),
                    spacing="3",
                ),
                on_submit=s.save_rule,
                reset_on_submit=False,
                key=s.form_version,
            ),
            max_width="min(640px, 94vw)",
        ),
        open=s.editor_open,
        on_open_change=s.set_editor_open,
    )


def _rules_tab() -> rx.Component:
    s = PoliciesState
    return rx.vstack(
        rx.hstack(
            rx.text(
                "Rules are checked top to bottom for every request; the first that matches decides.",
                size="2",
                color=rx.color("gray", 11),
            ),
            rx.spacer(),
            rx.button(rx.icon("plus", size=16), "New rule", on_click=s.new_rule, id="new-rule"),
            width="100%",
            align="center",
            wrap="wrap",
            spacing="3",
        ),
        rx.cond(
            s.rules.length() > 0,
            rx.vstack(rx.foreach(s.rules, _rule_card), spacing="2", width="100%"),
            empty_state("No rules: every request goes to the model it names.", icon="shield"),
        ),
        _rule_editor(),
        spacing="3",
        width="100%",
    )


def _credential_row(c: rx.Var[CredentialView]) -> rx.Component:
    s = PoliciesState
    return rx.card(
        rx.flex(
            rx.vstack(
                rx.hstack(rx.code(c.slug, weight="bold"), rx.text(c.name, size="2"), spacing="2", wrap="wrap"),
                rx.cond(c.description != "", rx.text(c.description, size="1", color=rx.color("gray", 10))),
                rx.text("Used by ", c.used_by, size="1", color=rx.color("gray", 10)),
                rx.text(
                    "Last used ",
                    rx.cond(c.last_used != "", local_time(c.last_used, "YYYY-MM-DD HH:mm"), "never"),
                    size="1",
                    color=rx.color("gray", 10),
                ),
                rx.cond(c.problem != "", rx.text(c.problem, size="1", color=rx.color("red", 11))),
                spacing="1",
                flex="1",
                min_width="0",
            ),
            rx.hstack(
                rx.button("Replace secret", size="1", variant="soft", on_click=s.start_replace(c.slug)),
                rx.button("Delete", size="1", variant="soft", color_scheme="red", on_click=s.delete_credential(c.slug)),
                spacing="2",
            ),
            direction=rx.breakpoints(initial="column", sm="row"),
            gap="3",
        ),
        width="100%",
        data_credential=c.slug,
    )


def _vault_tab() -> rx.Component:
    s = PoliciesState
    return rx.vstack(
        rx.text(
            "Stored encrypted under SWITCHYARD_SECRET_KEY. A secret is write-only: it is injected into upstream "
            "requests by rules and relays, and never shown again, here or anywhere.",
            size="2",
            color=rx.color("gray", 11),
        ),
        rx.cond(
            s.confirm_credential != "",
            rx.callout.root(
                rx.callout.text("Delete ", s.confirm_credential, " anyway? Rules and relays that use it will fail."),
                rx.hstack(
                    rx.button("Delete anyway", size="1", color_scheme="red", on_click=s.delete_credential_anyway),
                    rx.button("Keep it", size="1", variant="soft", on_click=s.keep_credential),
                    spacing="2",
                ),
                color_scheme="amber",
                width="100%",
            ),
        ),
        rx.foreach(s.credentials, _credential_row),
        rx.card(
            rx.form(
                rx.vstack(
                    rx.heading("Add a credential", size="3"),
                    rx.grid(
                        labelled("Slug", rx.input(name="slug", placeholder="openai-prod", id="credential-slug")),
                        labelled("Name", rx.input(name="name", placeholder="OpenAI production key")),
                        columns=rx.breakpoints(initial="1", sm="2"),
                        spacing="3",
                        width="100%",
                    ),
                    labelled("Description", rx.input(name="description")),
                    labelled(
                        "Secret", rx.input(name="secret", type="password", auto_complete="off", id="credential-secret")
                    ),
                    rx.button("Store", type="submit", id="store-credential"),
                    spacing="3",
                ),
                on_submit=s.add_credential,
                reset_on_submit=True,
            ),
            width="100%",
        ),
        rx.dialog.root(
            rx.dialog.content(
                rx.dialog.title("Replace the secret of ", s.replacing),
                rx.form(
                    rx.vstack(
                        rx.input(name="secret", type="password", auto_complete="off", placeholder="new secret"),
                        rx.hstack(
                            rx.dialog.close(rx.button("Cancel", type="button", variant="soft", color_scheme="gray")),
                            rx.button("Replace", type="submit"),
                            justify="end",
                            width="100%",
                        ),
                        spacing="3",
                    ),
                    on_submit=s.replace_secret,
                    reset_on_submit=True,
                ),
                max_width="min(440px, 94vw)",
            ),
            open=s.replacing != "",
            on_open_change=s.set_replacing_open,
        ),
        spacing="3",
        width="100%",
    )


def _relay_card(r: rx.Var[RelayView]) -> rx.Component:
    s = PoliciesState
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.code(r.slug, weight="bold"),
                rx.text(r.name, size="2"),
                rx.spacer(),
                rx.switch(checked=r.enabled, on_change=lambda v: s.toggle_relay(r.slug, v), aria_label="Enabled"),
                rx.icon_button(
                    rx.icon("trash-2", size=14),
                    variant="ghost",
                    color_scheme="red",
                    on_click=s.delete_relay(r.slug),
                    aria_label="Delete relay",
                ),
                width="100%",
                align="center",
                spacing="2",
            ),
            rx.text("Forwards to ", r.upstream_url, size="2", word_break="break-all"),
            rx.text("Credentials: ", r.bindings, size="1", color=rx.color("gray", 10), white_space="pre-wrap"),
            rx.text("Claude Code (.mcp.json)", size="2", weight="medium"),
            code_view(r.snippet, "json"),
            code_view(r.command, "bash"),
            rx.icon_button(
                rx.icon("copy", size=14),
                variant="soft",
                aria_label="Copy the snippet",
                on_click=[rx.set_clipboard(r.snippet), rx.toast.success("Snippet copied")],
            ),
            spacing="2",
            width="100%",
        ),
        width="100%",
        data_relay=r.slug,
    )


def _relays_tab() -> rx.Component:
    s = PoliciesState
    return rx.vstack(
        rx.text(
            "An MCP relay lets Claude Code (or any MCP client) reach an MCP server through Switchyard with stored "
            "credentials injected; the client only holds its Switchyard key, which must list the relay in its "
            "allowed relays.",
            size="2",
            color=rx.color("gray", 11),
        ),
        rx.foreach(s.relays, _relay_card),
        rx.card(
            rx.form(
                rx.vstack(
                    rx.heading("Add a relay", size="3"),
                    rx.grid(
                        labelled("Slug", rx.input(name="slug", placeholder="github")),
                        labelled("Name", rx.input(name="name", placeholder="GitHub MCP")),
                        columns=rx.breakpoints(initial="1", sm="2"),
                        spacing="3",
                        width="100%",
                    ),
                    labelled(
                        "Upstream URL", rx.input(name="upstream_url", placeholder="https://api.githubcopilot.com/mcp/")
                    ),
                    labelled("Credentials to inject", rx.text_area(name="bindings", rows="2"), forms.BINDING_HELP),
                    rx.button("Add relay", type="submit"),
                    spacing="3",
                ),
                on_submit=s.add_relay,
                reset_on_submit=True,
            ),
            width="100%",
        ),
        spacing="3",
        width="100%",
    )


def policies_page() -> rx.Component:
    s = PoliciesState
    return page_shell(
        "Policies",
        error_callout(s.load_error),
        error_callout(s.error),
        rx.cond(s.message != "", rx.callout(s.message, icon="check", color_scheme="green", width="100%")),
        rx.tabs.root(
            rx.tabs.list(
                rx.tabs.trigger("Routing rules", value="rules"),
                rx.tabs.trigger("Credential vault", value="vault"),
                rx.tabs.trigger("MCP relays", value="relays"),
            ),
            rx.tabs.content(rx.box(_rules_tab(), padding_top="16px"), value="rules"),
            rx.tabs.content(rx.box(_vault_tab(), padding_top="16px"), value="vault"),
            rx.tabs.content(rx.box(_relays_tab(), padding_top="16px"), value="relays"),
            value=s.tab,
            on_change=s.set_tab,
            width="100%",
        ),
    )
