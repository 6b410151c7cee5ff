"""`/attribution`: how each request's client, end user and session are read from its headers and body, and how
to make common clients send them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import reflex as rx

from ui_reflex import forms
from ui_reflex.api_client import ATTRIBUTION_ROLES, ApiError, AttributionMapping
from ui_reflex.layout import page_shell
from ui_reflex.session import admin_api
from ui_reflex.widgets import code_view, error_callout

ROLE_TITLES = {
    "client": ("Client", "Which program sent the request (Claude Code, the OpenAI SDK, Open WebUI …)."),
    "end_user": ("End user", "The person the request is for, when the client says so."),
    "session": ("Session", "The conversation or coding session the request belongs to."),
}


@dataclass(frozen=True)
class ClientExample:
    key: str
    title: str
    language: str
    text: str


def client_examples(origin: str) -> list[ClientExample]:
    """How common clients send the client, end user and session this page reads."""
    base = f"{origin.rstrip('/')}/v1" if origin else "http://127.0.0.1:3000/v1"
    return [
        ClientExample(
            "claude_code",
            "Claude Code",
            "text",
            "Nothing to set. Claude Code sends User-Agent: claude-cli/… (client), X-Claude-Code-Session-Id "
            "(session) and metadata.user_id (its device/user id, the end user).",
        ),
        ClientExample(
            "openai_python",
            "OpenAI SDK (Python)",
            "python",
            "from openai import OpenAI\n\n"
            f'client = OpenAI(base_url="{base}", api_key="<your Switchyard key>")\n'
            "client.chat.completions.create(\n"
            '    model="MODEL",\n'
            '    messages=[{"role": "user", "content": "Hello"}],\n'
            '    user="alice",                                   # end user\n'
            '    extra_headers={"X-Session-ID": "ticket-4711"},  # session\n'
            ")",
        ),
        ClientExample(
            "open_webui",
            "Open WebUI",
            "bash",
            "# forward who is chatting and in which chat\n"
            "docker run … -e ENABLE_FORWARD_USER_INFO_HEADERS=true ghcr.io/open-webui/open-webui:main\n"
            "# sends X-OpenWebUI-User-Id (end user) and X-OpenWebUI-Chat-Id (session); to log e-mail addresses,\n"
            "# put header:x-openwebui-user-email first under End user",
        ),
        ClientExample(
            "litellm",
            "LiteLLM",
            "text",
            "LiteLLM forwards its callers' user field and sends X-Litellm-Session-Id when a litellm_session_id is "
            "set; both are read by default.",
        ),
        ClientExample(
            "curl",
            "curl / any HTTP client",
            "bash",
            f"curl {base}/chat/completions \\\n"
            '  -H "Authorization: Bearer $SWITCHYARD_API_KEY" \\\n'
            '  -H "User-Agent: my-app/1.0" -H "X-Session-ID: batch-7" \\\n'
            '  -H "Content-Type: application/json" \\\n'
            '  -d \'{"model": "MODEL", "user": "alice", "messages": [{"role": "user", "content": "Hi"}]}\'',
        ),
    ]


class AttributionState(rx.State):
    sources: dict[str, str] = {}
    customized: list[str] = []
    examples: list[ClientExample] = []
    form_version: int = 0
    loaded: bool = False  # the form shows once its values are in
    load_error: str = ""
    error: str = ""
    message: str = ""

    @rx.event
    async def load(self):
        self.message = self.error = ""
        self.examples = client_examples(self.router.url.origin)
        self.loaded = False
        yield
        try:
            async with admin_api(self) as api:
                self._show(await api.attribution())
            self.loaded = True
        except ApiError as exc:
            self.load_error = f"Could not load the attribution mapping: {exc.message}"

    @rx.event
    async def save(self, form: dict[str, Any]):
        self.error = self.message = ""
        try:
            mapping = {role: forms.sources_from_lines(forms.text(form, role)) for role in ATTRIBUTION_ROLES}
        except forms.FormProblem as exc:
            self.error = str(exc)
            return
        try:
            async with admin_api(self) as api:
                self._show(await api.set_attribution(mapping))
        except ApiError as exc:
            self.error = f"Not saved: {exc.explanation}"
            return
        self.message = "Saved: new requests are attributed this way."

    @rx.event
    async def restore_defaults(self):
        self.error = self.message = ""
        try:
            async with admin_api(self) as api:
                await api.reset_attribution()
                self._show(await api.attribution())
        except ApiError as exc:
            self.error = f"Could not reset: {exc.message}"
            return
        self.message = "Back to the built-in defaults."

    def _show(self, mapping: AttributionMapping) -> None:
        self.sources = {role: forms.sources_to_lines(getattr(mapping, role)) for role in ATTRIBUTION_ROLES}
        self.customized = list(mapping.customized)
        self.form_version += 1
        self.load_error = ""


def _role(role: str) -> rx.Component:
    title, what = ROLE_TITLES[role]
    s = AttributionState
    return rx.vstack(
        rx.hstack(
            rx.text(title, weight="bold", size="3"),
            rx.cond(
                s.customized.contains(role),
                rx.badge("customized", variant="soft"),
                rx.badge("default", color_scheme="gray"),
            ),
            spacing="2",
            align="center",
        ),
        rx.text(what, size="2", color=rx.color("gray", 11)),
        rx.text_area(
            name=role,
            default_value=s.sources[role].to(str),
            rows="5",
            font_family="monospace",
            width="100%",
            id=f"sources-{role}",
        ),
        spacing="1",
        width="100%",
    )


def _example(example: rx.Var[ClientExample]) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading(example.title, size="3"),
            rx.cond(
                example.language == "text",
                rx.text(example.text, size="2"),
                code_view(example.text, example.language),
            ),
            spacing="2",
            width="100%",
        ),
        width="100%",
        min_width="0",
        data_example=example.key,
    )


def attribution_page() -> rx.Component:
    s = AttributionState
    return page_shell(
        "Attribution",
        error_callout(s.load_error),
        rx.text(
            "Every request in the log carries a client, an end user and a session, read from its headers or JSON "
            "body. For each, the sources below are tried in order and the first non-empty value wins.",
            size="2",
            color=rx.color("gray", 11),
        ),
        rx.cond(
            s.loaded,
            rx.card(
                rx.form(
                    rx.vstack(
                        *[_role(role) for role in ATTRIBUTION_ROLES],
                        rx.text(forms.SOURCE_HELP, size="1", color=rx.color("gray", 10)),
                        error_callout(s.error),
                        rx.cond(
                            s.message != "", rx.callout(s.message, icon="check", color_scheme="green", width="100%")
                        ),
                        rx.hstack(
                            rx.button("Save", type="submit", id="save-attribution"),
                            rx.button(
                                "Reset to defaults",
                                type="button",
                                variant="soft",
                                color_scheme="gray",
                                on_click=s.restore_defaults,
                            ),
                            spacing="3",
                        ),
                        spacing="4",
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
        rx.heading("Setting up clients", size="4"),
        rx.grid(
            rx.foreach(s.examples, _example), columns=rx.breakpoints(initial="1", lg="2"), spacing="3", width="100%"
        ),
    )
