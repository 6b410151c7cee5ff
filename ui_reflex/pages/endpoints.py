"""`/endpoints`: the base URL to copy, a key selector, and ready-made client configurations for a chosen model."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

import reflex as rx

from ui_reflex.api_client import ApiError, ApiKeyInfo
from ui_reflex.client_snippets import KEY_ENV, SNIPPET_KINDS, SnippetKind, client_snippets
from ui_reflex.layout import page_shell
from ui_reflex.session import admin_api
from ui_reflex.widgets import code_view, error_callout

ANY_KEY = "none"


@dataclass(frozen=True)
class KeyChoice:
    id: str
    label: str
    allowed: str  # "" when the key allows every model


def key_allows(patterns: tuple[str, ...], model: str) -> bool:
    """Whether an allow-list (globs or ``re:`` expressions; empty allows all) lets a key use `model`."""
    if not patterns:
        return True
    for pattern in patterns:
        if pattern.startswith("re:"):
            try:
                if re.search(pattern[3:], model):
                    return True
            except re.error:
                continue
        elif fnmatch.fnmatchcase(model, pattern):
            return True
    return False


def key_choices(keys: list[ApiKeyInfo]) -> list[KeyChoice]:
    return [
        KeyChoice(k.id, f"{k.name} ({k.prefix}…)", ", ".join(k.allowed_models))
        for k in keys
        if k.state == "active" and "inference" in k.scopes
    ]


class EndpointsState(rx.State):
    origin: str = ""
    model: str = ""
    models: list[str] = []
    keys: list[KeyChoice] = []
    key_id: str = ANY_KEY
    load_error: str = ""

    _all_models: list[str] = []
    _allow: dict[str, list[str]] = {}

    @rx.event
    async def load(self):
        # The page's own origin is what clients reach; the server's bind address may be 0.0.0.0 or a proxy.
        self.origin = self.router.url.origin
        try:
            async with admin_api(self) as api:
                self._all_models = [m.id for m in await api.list_models()]
                keys = await api.list_keys()
            self.load_error = ""
        except ApiError as exc:
            self.load_error = f"Could not list models and keys: {exc.message}"
            keys = []
        self.keys = key_choices(keys)
        self._allow = {k.id: list(k.allowed_models) for k in keys}
        if self.key_id not in self._allow:
            self.key_id = ANY_KEY
        self._filter_models()

    @rx.event
    def set_model(self, value: str):
        self.model = value

    @rx.event
    def set_key(self, value: str):
        self.key_id = value
        self._filter_models()

    @rx.var
    def key_note(self) -> str:
        """What to put in SWITCHYARD_API_KEY for the chosen key."""
        choice = next((k for k in self.keys if k.id == self.key_id), None)
        if choice is None:
            return f"Set ${KEY_ENV} to a Switchyard API key (create one on the Keys page)."
        allowed = f" It may use: {choice.allowed}." if choice.allowed else " It may use every model."
        return (
            f"Set ${KEY_ENV} to the secret of {choice.label}; it was shown once when the key was created "
            f"(lost it? create a new key).{allowed}"
        )

    def _filter_models(self) -> None:
        allowed = tuple(self._allow.get(self.key_id, ()))
        self.models = [m for m in self._all_models if key_allows(allowed, m)]
        if self.model not in self.models:
            self.model = self.models[0] if self.models else ""

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
            code_view(code, kind.language, font_size="13px", wrap_long_lines=False),
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
                rx.text("API key", size="2", weight="medium", color=rx.color("gray", 11)),
                rx.select.root(
                    rx.select.trigger(aria_label="API key", id="snippet-key"),
                    rx.select.content(
                        rx.select.item("Any key", value=ANY_KEY),
                        rx.foreach(s.keys, lambda k: rx.select.item(k.label, value=k.id)),
                    ),
                    value=s.key_id,
                    on_change=s.set_key,
                ),
                spacing="1",
            ),
            rx.vstack(
                rx.text("Model", size="2", weight="medium", color=rx.color("gray", 11)),
                rx.select(s.models, value=s.model, on_change=s.set_model, aria_label="Model", id="snippet-model"),
                spacing="1",
            ),
            spacing="5",
            wrap="wrap",
            width="100%",
        ),
        rx.text(s.key_note, size="2", color=rx.color("gray", 11), id="key-note"),
        rx.grid(
            *[_snippet_card(kind) for kind in SNIPPET_KINDS],
            columns=rx.breakpoints(initial="1", lg="2"),
            spacing="4",
            width="100%",
        ),
    )
