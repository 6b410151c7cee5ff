"""`/endpoints`: the base URL to copy and ready-made client configurations for a chosen model."""

from __future__ import annotations

import reflex as rx

from ui_reflex.api_client import ApiError
from ui_reflex.client_snippets import KEY_ENV, SNIPPET_KINDS, SnippetKind, client_snippets
from ui_reflex.layout import page_shell
from ui_reflex.live import admin_api
from ui_reflex.widgets import error_callout


class EndpointsState(rx.State):
    origin: str = ""
    model: str = ""
    models: list[str] = []
    load_error: str = ""

    @rx.event
    async def load(self):
        # The page's own origin is what clients reach; the server's bind address may be 0.0.0.0 or a proxy.
        self.origin = self.router.url.origin
        try:
            async with admin_api(self) as api:
                self.models = [m.id for m in await api.list_models()]
            self.load_error = ""
        except ApiError as exc:
            self.load_error = f"Could not list models: {exc.message}"
        if self.models and self.model not in self.models:
            self.model = self.models[0]

    @rx.event
    def set_model(self, value: str):
        self.model = value

    @rx.var
    def base_url(self) -> str:
        return f"{self.origin}/v1" if self.origin else ""

    @rx.var
    def snippets(self) -> dict[str, str]:
        return client_snippets(self.origin, self.model) if self.origin else {}


def _copy_field(label: str, value: rx.Var[str], field_id: str) -> rx.Component:
    return rx.vstack(
        rx.text(label, size="2", weight="medium", color=rx.color("gray", 11)),
        rx.hstack(
            rx.code(value, size="3", variant="outline", id=field_id, word_break="break-all", padding="6px 10px"),
            rx.icon_button(
                rx.icon("copy", size=16),
                variant="soft",
                aria_label=f"Copy {label}",
                on_click=[rx.set_clipboard(value), rx.toast.success("Copied")],
            ),
            align="center",
            spacing="2",
        ),
        spacing="1",
    )


def _snippet_card(kind: SnippetKind) -> rx.Component:
    code = EndpointsState.snippets[kind.key].to(str)
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.heading(kind.title, size="3"),
                rx.spacer(),
                rx.icon_button(
                    rx.icon("copy", size=16),
                    variant="ghost",
                    aria_label=f"Copy the {kind.title} snippet",
                    on_click=[rx.set_clipboard(code), rx.toast.success(f"{kind.title} snippet copied")],
                ),
                width="100%",
                align="center",
            ),
            rx.text(kind.where, size="1", color=rx.color("gray", 10)),
            rx.box(
                rx.code_block(code, language=kind.language, font_size="13px", margin="0", wrap_long_lines=False),
                width="100%",
                overflow_x="auto",
            ),
            spacing="2",
            width="100%",
        ),
        width="100%",
        min_width="0",
        data_snippet=kind.key,
    )


def endpoints_page() -> rx.Component:
    s = EndpointsState
    return page_shell(
        "Endpoints",
        error_callout(s.load_error),
        rx.flex(
            _copy_field("OpenAI-compatible base URL", s.base_url, "base-url"),
            _copy_field("Anthropic base URL (Claude Code)", s.origin, "origin-url"),
            rx.vstack(
                rx.text("Model", size="2", weight="medium", color=rx.color("gray", 11)),
                rx.select(s.models, value=s.model, on_change=s.set_model, aria_label="Model", id="snippet-model"),
                spacing="1",
            ),
            spacing="5",
            wrap="wrap",
            width="100%",
        ),
        rx.text(
            f"Snippets read the key from ${KEY_ENV}; set it to a Switchyard API key.",
            size="2",
            color=rx.color("gray", 11),
        ),
        rx.grid(
            *[_snippet_card(kind) for kind in SNIPPET_KINDS],
            columns=rx.breakpoints(initial="1", lg="2"),
            spacing="4",
            width="100%",
        ),
    )
