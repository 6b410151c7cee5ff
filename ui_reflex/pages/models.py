"""`/models`: the models this server runs, their state, statistics and load/unload actions; follows model.state
events. Each model links to its own page (`/models/{id}`)."""

from __future__ import annotations

from dataclasses import dataclass

import reflex as rx

from ui_reflex.api_client import AdminClient, ApiError, ModelSummary
from ui_reflex.layout import page_shell
from ui_reflex.live import LiveUpdates
from ui_reflex.request_views import format_count, format_duration, format_ms, format_rate
from ui_reflex.session import admin_api
from ui_reflex.widgets import empty_state, error_callout, live_badge

STATE_COLORS = {"ready": "green", "starting": "amber", "stopping": "amber", "failed": "red", "unloaded": "gray"}


@dataclass(frozen=True)
class ModelView:
    id: str
    name: str
    description: str
    kind: str
    state: str
    state_color: str
    running: bool
    loadable: bool
    activity: str
    aliases: str
    stats: str = ""
    href: str = ""


def stats_line(summary: ModelSummary) -> str:
    """Requests, tokens, speed and TTFT of the last 24 hours, and uptime, in one line."""
    stats = summary.stats
    parts = [f"{format_count(stats.requests)} requests in 24 h"]
    if stats.errors:
        parts.append(f"{stats.errors} failed")
    if stats.prompt_tokens or stats.completion_tokens:
        parts.append(f"{format_count(stats.prompt_tokens)} → {format_count(stats.completion_tokens)} tokens")
    if stats.tokens_per_second is not None:
        parts.append(format_rate(stats.tokens_per_second))
    if stats.ttft_ms is not None:
        parts.append(f"TTFT {format_ms(stats.ttft_ms)}")
    if summary.uptime_seconds is not None:
        parts.append(f"up {format_duration(summary.uptime_seconds)}" + (f" on :{summary.port}" if summary.port else ""))
    return " · ".join(parts)


def model_views(models: list[ModelSummary]) -> list[ModelView]:
    """The local models of `GET /api/models`, for the cards: stopped servers show as "unloaded"."""
    views = []
    for m in models:
        state = "unloaded" if m.state in ("stopped", "unknown", "") else m.state
        activity = ""
        if m.in_flight or m.queued:
            activity = f"{m.in_flight} in flight, {m.queued} queued"
        elif m.last_load_seconds is not None and state == "ready":
            activity = f"loaded in {m.last_load_seconds:.1f} s"
        views.append(
            ModelView(
                id=m.id,
                name=m.name if m.name and m.name != m.id else "",
                description=m.description,
                kind="unlisted" if m.unlisted else "model",
                state=state,
                state_color=STATE_COLORS.get(state, "gray"),
                running=state in ("ready", "starting"),
                loadable=True,
                activity=activity,
                aliases=", ".join(m.aliases),
                stats=stats_line(m),
                href=f"/models/{m.id}",
            )
        )
    return views


class ModelsState(LiveUpdates, rx.State):
    models: list[ModelView] = []
    load_error: str = ""
    action_message: str = ""
    action_error: str = ""
    busy_model: str = ""  # the model a load/unload is running for ("*" for unload all)

    @rx.event
    async def load(self):
        self.action_message = self.action_error = ""
        try:
            async with admin_api(self) as api:
                self._live_apply(await self._live_fetch(api, True))
        except ApiError as exc:
            self.load_error = f"Could not list models: {exc.message}"
        return ModelsState.follow_live

    @rx.event(background=True)
    async def load_model(self, model_id: str):
        async with self:
            if self.busy_model:
                return
            self.busy_model, self.action_message, self.action_error = model_id, f"Loading {model_id}…", ""
        try:
            async with admin_api(self) as api:
                await api.load_model(model_id)
            message, error = f"{model_id} is loaded.", ""
        except ApiError as exc:
            message, error = "", f"Could not load {model_id}: {exc.message}"
        await self._finish_action(message, error)

    @rx.event(background=True)
    async def unload_model(self, model_id: str):
        await self._unload(model_id)

    @rx.event(background=True)
    async def unload_all(self):
        await self._unload(None)

    async def _unload(self, model_id: str | None) -> None:
        label = model_id or "all models"
        async with self:
            if self.busy_model:
                return
            self.busy_model, self.action_message, self.action_error = model_id or "*", f"Unloading {label}…", ""
        try:
            async with admin_api(self) as api:
                await (api.unload_model(model_id) if model_id else api.unload_all())
            message, error = f"Unloaded {label}.", ""
        except ApiError as exc:
            message, error = "", f"Could not unload {label}: {exc.message}"
        await self._finish_action(message, error)

    async def _finish_action(self, message: str, error: str) -> None:
        refreshed = await self._refresh_in_background()
        async with self:
            self.busy_model, self.action_message, self.action_error = "", message, error
            if refreshed is None:
                self.load_error = "Could not refresh the model list."

    # ---- live updates ------------------------------------------------------

    def _live_topics(self) -> frozenset[str]:
        return frozenset({"model.state", "config.reloaded"})

    def _live_query(self, topics: frozenset[str]) -> bool:
        return True

    async def _live_fetch(self, api: AdminClient, query: bool) -> list[ModelView]:
        return model_views(await api.local_models())

    def _live_apply(self, views: list[ModelView]) -> bool:
        changed = views != self.models
        self.models = views
        self.load_error = ""
        return changed


# --------------------------------------------------------------------------- components


def _model_card(model: rx.Var[ModelView]) -> rx.Component:
    busy = ModelsState.busy_model != ""
    return rx.card(
        rx.flex(
            rx.vstack(
                rx.hstack(
                    rx.cond(
                        model.href != "",
                        rx.link(model.id, href=model.href, weight="bold", size="3", word_break="break-all"),
                        rx.text(model.id, weight="bold", size="3", word_break="break-all"),
                    ),
                    rx.badge(model.state, color_scheme=model.state_color, variant="soft", data_state=model.state),
                    rx.cond(model.kind != "model", rx.badge(model.kind, variant="outline")),
                    align="center",
                    spacing="2",
                    wrap="wrap",
                ),
                rx.cond(model.name != "", rx.text(model.name, size="2", color=rx.color("gray", 11))),
                rx.cond(model.description != "", rx.text(model.description, size="2", color=rx.color("gray", 11))),
                rx.cond(model.aliases != "", rx.text("aliases: ", model.aliases, size="1", color=rx.color("gray", 10))),
                rx.cond(model.activity != "", rx.text(model.activity, size="1", color=rx.color("gray", 10))),
                rx.cond(model.stats != "", rx.text(model.stats, size="1", color=rx.color("gray", 10), data_stats="")),
                spacing="1",
                flex="1",
                min_width="0",
            ),
            rx.cond(
                model.loadable,
                rx.cond(
                    model.running,
                    rx.button(
                        rx.icon("square", size=14),
                        "Unload",
                        variant="soft",
                        color_scheme="gray",
                        loading=ModelsState.busy_model == model.id,
                        disabled=busy,
                        on_click=ModelsState.unload_model(model.id),
                        data_action="unload",
                    ),
                    rx.button(
                        rx.icon("play", size=14),
                        "Load",
                        variant="soft",
                        loading=ModelsState.busy_model == model.id,
                        disabled=busy,
                        on_click=ModelsState.load_model(model.id),
                        data_action="load",
                    ),
                ),
            ),
            direction=rx.breakpoints(initial="column", sm="row"),
            align=rx.breakpoints(initial="start", sm="center"),
            gap="3",
        ),
        width="100%",
        data_model=model.id,
    )


def models_page() -> rx.Component:
    s = ModelsState
    return page_shell(
        "Models",
        error_callout(s.load_error),
        error_callout(s.action_error),
        rx.cond(s.action_message != "", rx.callout(s.action_message, icon="info", width="100%")),
        rx.cond(
            s.models.length() > 0,
            rx.vstack(rx.foreach(s.models, _model_card), spacing="3", width="100%"),
            empty_state("No models configured. Add models to config.yaml and they appear here.", icon="boxes"),
        ),
        actions=rx.hstack(
            live_badge(s.live_status),
            rx.button(
                "Unload all",
                variant="outline",
                color_scheme="gray",
                size="2",
                loading=s.busy_model == "*",
                disabled=s.busy_model != "",
                on_click=s.unload_all,
            ),
            align="center",
            spacing="3",
        ),
    )
