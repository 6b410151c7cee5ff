"""`/models/{id}`: one local model — state, load/unload, statistics, load history and its config entry.

Model ids may contain slashes (``org/model``), so the page takes the rest of the path as the id
(route ``/models/[[...splat]]``); it follows model.state events while open.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

import reflex as rx

from ui_reflex.api_client import AdminClient, ApiError, ModelDetail, NotFound
from ui_reflex.layout import page_shell
from ui_reflex.live import LiveUpdates
from ui_reflex.pages.models import STATE_COLORS
from ui_reflex.request_views import format_count, format_duration, format_ms, format_rate
from ui_reflex.session import admin_api
from ui_reflex.widgets import code_view, error_callout, field_row, live_badge, local_time

PREFIX = "/models/"


@dataclass(frozen=True)
class Fact:
    label: str
    value: str


@dataclass(frozen=True)
class HistoryRow:
    at: str
    state: str
    color: str
    change: str
    load: str
    reason: str


def model_facts(detail: ModelDetail) -> tuple[list[Fact], list[Fact]]:
    """(what the process is doing, what it did in the statistics window) as label/value pairs."""
    m, st = detail.model, detail.model.stats
    process = [
        Fact("Port", str(m.port) if m.port else "—"),
        Fact("PID", str(m.pid) if m.pid else "—"),
        Fact("Uptime", format_duration(m.uptime_seconds)),
        Fact("In flight / queued", f"{m.in_flight} / {m.queued}"),
        Fact("Last load took", f"{m.last_load_seconds:.2f} s" if m.last_load_seconds is not None else "—"),
        Fact("Idle unload (ttl)", f"{m.ttl} s" if m.ttl else "never"),
        Fact("Aliases", ", ".join(m.aliases) or "—"),
    ]
    stats = [
        Fact("Requests", format_count(st.requests)),
        Fact("Errors", format_count(st.errors)),
        Fact("Prompt tokens", format_count(st.prompt_tokens)),
        Fact("Completion tokens", format_count(st.completion_tokens)),
        Fact("Mean speed", format_rate(st.tokens_per_second)),
        Fact("Mean time to first token", format_ms(st.ttft_ms)),
    ]
    return process, stats


def history_rows(detail: ModelDetail) -> list[HistoryRow]:
    return [
        HistoryRow(
            at=e.at.isoformat(),
            state=e.state,
            color=STATE_COLORS.get(e.state, "gray"),
            change=f"{e.previous} → {e.state}" if e.previous else e.state,
            load=f"{e.load_seconds:.2f} s" if e.load_seconds is not None else "",
            reason=e.reason or "",
        )
        for e in detail.history
    ]


class ModelDetailState(LiveUpdates, rx.State):
    model_id: str = ""
    title: str = ""
    description: str = ""
    state: str = ""
    state_color: str = "gray"
    process: list[Fact] = []
    stats: list[Fact] = []
    history: list[HistoryRow] = []
    config_yaml: str = ""
    busy: bool = False
    message: str = ""
    error: str = ""
    load_error: str = ""

    @rx.event
    async def load(self):
        self.model_id = unquote(self.router.url.path.removeprefix(PREFIX).strip("/"))
        self.message = self.error = self.load_error = ""
        self.history, self.process, self.stats, self.config_yaml = [], [], [], ""
        try:
            async with admin_api(self) as api:
                self._live_apply(await api.model_detail(self.model_id))
                self.config_yaml = await api.model_config(self.model_id)
        except NotFound:
            self.load_error = f"There is no local model {self.model_id!r}."
            return None
        except ApiError as exc:
            self.load_error = f"Could not load {self.model_id}: {exc.message}"
        return ModelDetailState.follow_live

    @rx.event(background=True)
    async def load_model(self):
        await self._act("load")

    @rx.event(background=True)
    async def unload_model(self):
        await self._act("unload")

    async def _act(self, action: str) -> None:
        async with self:
            if self.busy:
                return
            self.busy, self.error = True, ""
            self.message = f"{'Loading' if action == 'load' else 'Unloading'} {self.model_id}…"
            model_id = self.model_id
        message, error = "", ""
        try:
            async with admin_api(self) as api:
                if action == "load":
                    await api.load_model(model_id)
                    message = f"{model_id} is loaded."
                else:
                    await api.unload_model(model_id)
                    message = f"{model_id} is unloaded."
        except ApiError as exc:
            error = f"Could not {action} {model_id}: {exc.message}"
        await self._refresh_in_background()
        async with self:
            self.busy, self.message, self.error = False, message, error

    # ---- live updates ------------------------------------------------------

    def _live_topics(self) -> frozenset[str]:
        return frozenset({"model.state", "request.completed"})

    def _live_query(self, topics: frozenset[str]) -> str | None:
        return self.model_id or None

    async def _live_fetch(self, api: AdminClient, model_id: str) -> ModelDetail:
        return await api.model_detail(model_id)

    def _live_apply(self, detail: ModelDetail) -> bool:
        m = detail.model
        self.title = m.name if m.name and m.name != m.id else ""
        self.description = m.description
        self.state, self.state_color = m.state, STATE_COLORS.get(m.state, "gray")
        process, stats = model_facts(detail)
        history = history_rows(detail)
        changed = (process, stats, history) != (self.process, self.stats, self.history)
        self.process, self.stats, self.history = process, stats, history
        self.load_error = ""
        return changed


def _facts(title: str, facts: rx.Var[list[Fact]]) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading(title, size="3"),
            rx.foreach(facts, lambda f: field_row(f.label, f.value)),
            spacing="2",
            width="100%",
        ),
        width="100%",
    )


def _history() -> rx.Component:
    s = ModelDetailState
    row = lambda h: rx.table.row(
        rx.table.cell(local_time(h.at, "MM-DD HH:mm:ss"), white_space="nowrap"),
        rx.table.cell(rx.badge(h.change, color_scheme=h.color, variant="soft")),
        rx.table.cell(h.load, white_space="nowrap"),
        rx.table.cell(h.reason, display=["none", "table-cell"]),
    )
    return rx.vstack(
        rx.heading("Load history", size="4"),
        rx.cond(
            s.history.length() > 0,
            rx.box(
                rx.table.root(
                    rx.table.header(
                        rx.table.row(
                            rx.table.column_header_cell("Time"),
                            rx.table.column_header_cell("Change"),
                            rx.table.column_header_cell("Load time"),
                            rx.table.column_header_cell("Reason", display=["none", "table-cell"]),
                        )
                    ),
                    rx.table.body(rx.foreach(s.history, row)),
                    size="1",
                    variant="surface",
                    width="100%",
                ),
                width="100%",
                overflow_x="auto",
                id="model-history",
            ),
            rx.text("This model has not been loaded yet.", size="2", color=rx.color("gray", 10)),
        ),
        spacing="3",
        width="100%",
    )


def model_detail_page() -> rx.Component:
    s = ModelDetailState
    running = (s.state == "ready") | (s.state == "starting")
    return page_shell(
        "Model",
        rx.hstack(
            rx.link(
                rx.hstack(rx.icon("arrow-left", size=14), "All models", align="center", spacing="1"),
                href="/models",
                size="2",
            ),
            width="100%",
        ),
        error_callout(s.load_error),
        rx.flex(
            rx.vstack(
                rx.hstack(
                    rx.heading(s.model_id, size="6", word_break="break-all", id="model-id"),
                    rx.badge(s.state, color_scheme=s.state_color, variant="soft", size="2", data_state=s.state),
                    align="center",
                    spacing="3",
                    wrap="wrap",
                ),
                rx.cond(s.title != "", rx.text(s.title, size="3", color=rx.color("gray", 11))),
                rx.cond(s.description != "", rx.text(s.description, size="2", color=rx.color("gray", 11))),
                spacing="1",
                flex="1",
                min_width="0",
            ),
            rx.cond(
                running,
                rx.button(
                    rx.icon("square", size=14),
                    "Unload",
                    variant="soft",
                    color_scheme="gray",
                    loading=s.busy,
                    on_click=s.unload_model,
                    data_action="unload",
                ),
                rx.button(
                    rx.icon("play", size=14),
                    "Load",
                    variant="soft",
                    loading=s.busy,
                    on_click=s.load_model,
                    data_action="load",
                ),
            ),
            direction=rx.breakpoints(initial="column", sm="row"),
            gap="3",
            width="100%",
        ),
        error_callout(s.error),
        rx.cond(s.message != "", rx.callout(s.message, icon="info", width="100%")),
        rx.grid(
            _facts("Process", s.process),
            _facts("Last 24 hours", s.stats),
            columns=rx.breakpoints(initial="1", md="2"),
            spacing="4",
            width="100%",
        ),
        _history(),
        rx.vstack(
            rx.hstack(
                rx.heading("Config", size="4"),
                rx.spacer(),
                rx.icon_button(
                    rx.icon("copy", size=16),
                    variant="ghost",
                    aria_label="Copy the config snippet",
                    on_click=[rx.set_clipboard(s.config_yaml), rx.toast.success("Copied")],
                ),
                width="100%",
                align="center",
            ),
            code_view(s.config_yaml, "yaml", font_size="13px", id="model-config"),
            rx.link("Edit config.yaml", href="/config", size="2"),
            spacing="2",
            width="100%",
        ),
        actions=live_badge(s.live_status),
    )
