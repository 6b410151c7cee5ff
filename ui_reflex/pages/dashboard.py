"""`/`: the last 24 hours at a glance — stat tiles with sparklines, model timeline, upstream health, GPUs and
the newest requests — updated live from `/api/events` (slow ETag polling while the stream is down)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import reflex as rx

from ui_reflex.api_client import (
    AdminClient,
    ApiError,
    GpuInfo,
    Histogram,
    ModelDetail,
    NotSignedIn,
    RequestPage,
    RequestQuery,
    SystemStatus,
)
from ui_reflex.charts import TimelineSegment, sparkline, sparkline_area, sparkline_points, timeline_segments
from ui_reflex.layout import page_shell
from ui_reflex.live import LiveUpdates
from ui_reflex.pages.requests import request_table
from ui_reflex.request_views import (
    RequestView,
    bucket_rows,
    format_bytes,
    format_cost,
    format_count,
    format_duration,
    format_rate,
    request_view,
    summarize_requests,
)
from ui_reflex.session import admin_api
from ui_reflex.widgets import empty_state, error_callout, live_badge

WINDOW = timedelta(hours=24)
BUCKETS = 48
ROW_LIMIT = 500
"""Rows fetched for speed and cost (the API's page maximum); counts come from the histogram, which has no cap."""
RECENT = 10
TIMELINE_MODELS = 12
HEALTH_REFRESH_SECONDS = 10.0
"""How often upstream health and GPUs are re-read while the dashboard is open."""
STATE_COLORS = {"ready": "green", "starting": "amber", "stopping": "amber", "failed": "red"}


@dataclass(frozen=True)
class Tile:
    key: str
    label: str
    value: str
    hint: str
    alert: bool
    points: str
    area: str


@dataclass(frozen=True)
class ModelTimeline:
    model: str
    state: str
    state_color: str
    segments: list[TimelineSegment]
    loads: str


@dataclass(frozen=True)
class UpstreamView:
    name: str
    kind: str
    reachable: bool
    detail: str


@dataclass(frozen=True)
class GpuView:
    name: str
    memory: str
    memory_percent: int
    utilization: str
    temperature: str
    power: str


@dataclass
class Snapshot:
    """What one refresh fetched; parts not asked for stay None."""

    page: RequestPage | None = None
    histogram: Histogram | None = None
    since: datetime | None = None
    models: list[ModelDetail] | None = None
    system: SystemStatus | None = None
    gpus: list[GpuInfo] | None = None
    asked: frozenset[str] = field(default_factory=frozenset)
    errors: list[str] = field(default_factory=list)


def stat_tiles(page: RequestPage, histogram: Histogram, since: datetime) -> list[Tile]:
    """The five tiles: counts from the histogram (exact), speed and cost from the newest rows."""
    buckets = histogram.buckets
    requests = sum(b.count for b in buckets)
    errors = sum(b.errors for b in buckets)
    tokens = sum(b.prompt_tokens + b.completion_tokens for b in buckets)
    rows = page.items
    stats = summarize_requests(rows)
    per_bucket = bucket_rows(rows, since, histogram.bucket_seconds, len(buckets))
    speeds = [summarize_requests(slot).tokens_per_second for slot in per_bucket]
    costs = [summarize_requests(slot).cost_usd for slot in per_bucket]
    capped = len(rows) >= ROW_LIMIT
    sample = f"the newest {len(rows)} requests" if capped else "the last 24 hours"

    def tile(key: str, label: str, value: str, hint: str, series: list[float | None], alert: bool = False) -> Tile:
        points = sparkline_points(series)
        return Tile(key, label, value, hint, alert, points, sparkline_area(points))

    return [
        tile("requests", "Requests", format_count(requests), "last 24 hours", [b.count for b in buckets]),
        tile(
            "tokens",
            "Tokens",
            format_count(tokens),
            "prompt + completion",
            [b.prompt_tokens + b.completion_tokens for b in buckets],
        ),
        tile(
            "tokens/s",
            "Tokens/s",
            format_rate(stats.tokens_per_second).removesuffix(" tok/s"),
            f"generation speed, {sample}",
            speeds,
        ),
        tile(
            "errors",
            "Errors",
            format_count(errors),
            f"{errors / requests:.1%} of requests" if requests else "no requests yet",
            [b.errors for b in buckets],
            alert=errors > 0,
        ),
        tile("cost", "Cost", format_cost(stats.cost_usd), f"priced remote models, {sample}", costs),
    ]


def model_timelines(details: list[ModelDetail], since: datetime, until: datetime) -> list[ModelTimeline]:
    out = []
    for detail in details:
        model = detail.model
        loads = sum(1 for e in detail.history if e.state == "ready" and e.at >= since)
        out.append(
            ModelTimeline(
                model=model.id,
                state=model.state,
                state_color=STATE_COLORS.get(model.state, "gray"),
                segments=timeline_segments(detail.history, since, until, model.state),
                loads=f"{loads} load{'s' if loads != 1 else ''}",
            )
        )
    return out


def upstream_views(system: SystemStatus) -> list[UpstreamView]:
    out = []
    for u in system.upstreams:
        if u.reachable:
            detail = f"{u.latency_ms:.0f} ms" if u.latency_ms is not None else "reachable"
        else:
            detail = u.error or (f"HTTP {u.status_code}" if u.status_code else "unreachable")
        out.append(UpstreamView(u.name, u.kind, u.reachable, detail))
    return out


def gpu_views(gpus: list[GpuInfo]) -> list[GpuView]:
    out = []
    for g in gpus:
        percent = round(100 * g.memory_used_bytes / g.memory_total_bytes) if g.memory_total_bytes else 0
        out.append(
            GpuView(
                name=f"{g.index}: {g.name}",
                memory=f"{format_bytes(g.memory_used_bytes)} / {format_bytes(g.memory_total_bytes)}",
                memory_percent=percent,
                utilization="—" if g.utilization_percent is None else f"{g.utilization_percent:.0f}%",
                temperature="—" if g.temperature_c is None else f"{g.temperature_c:.0f} °C",
                power="—" if g.power_watts is None else f"{g.power_watts:.0f} W",
            )
        )
    return out


class DashboardState(LiveUpdates, rx.State):
    tiles: list[Tile] = []
    recent: list[RequestView] = []
    timelines: list[ModelTimeline] = []
    upstreams: list[UpstreamView] = []
    gpus: list[GpuView] = []
    gpu_note: str = ""
    health: str = ""
    health_ok: bool = True
    system_line: str = ""
    load_error: str = ""

    _etag: str = ""

    @rx.event
    async def load(self):
        self._etag = ""
        try:
            async with admin_api(self) as api:
                self._apply(await self._live_fetch(api, self._live_query(self._live_topics())))
        except ApiError as exc:
            self.load_error = f"Could not load the dashboard: {exc.message}"
        return DashboardState.follow_live

    # ---- live updates ------------------------------------------------------

    def _live_topics(self) -> frozenset[str]:
        return frozenset({"request.completed", "model.state", "config.reloaded", "gpu.sample", "heartbeat"})

    def _live_heartbeat(self) -> float:
        return HEALTH_REFRESH_SECONDS

    def _live_query(self, topics: frozenset[str]) -> tuple[frozenset[str], str]:
        asked = set()
        if "request.completed" in topics:
            asked.add("requests")
        if topics & {"model.state", "config.reloaded"}:
            asked |= {"models", "system"}
        if "gpu.sample" in topics:
            asked.add("gpus")
        if "heartbeat" in topics:  # upstream health changes without events (a server stops answering)
            asked |= {"system", "gpus"}
        if topics == self._live_topics():  # a full refresh (page load, polling)
            asked |= {"requests", "models", "system", "gpus"}
        return frozenset(asked), self._etag

    async def _live_fetch(self, api: AdminClient, query: tuple[frozenset[str], str]) -> Snapshot:
        """Each part on its own: one failing endpoint leaves the others on screen (and says what failed)."""
        asked, etag = query
        until = datetime.now(UTC)
        since = until - WINDOW
        snap = Snapshot(since=since, asked=asked)

        async def part(name: str, call: Awaitable[Any]) -> Any:
            try:
                return await call
            except NotSignedIn:
                raise
            except ApiError as exc:
                snap.errors.append(f"{name}: {exc.message}")
                return None

        if "requests" in asked:
            snap.page = await part(
                "requests",
                api.list_requests(limit=ROW_LIMIT, query=RequestQuery(since=since), if_none_match=etag or None),
            )
            if snap.page is not None:
                snap.histogram = await part(
                    "histogram", api.request_histogram(since=since, until=until, buckets=BUCKETS)
                )
        if "models" in asked:
            models = await part("models", api.local_models())
            if models is not None:
                details = [part("model history", api.model_detail(m.id, history=50)) for m in models[:TIMELINE_MODELS]]
                snap.models = [d for d in await asyncio.gather(*details) if d is not None]
        if "system" in asked:
            snap.system = await part("system status", api.system_status())
        if "gpus" in asked:
            snap.gpus = await part("GPUs", api.gpus())
        return snap

    def _live_apply(self, snap: Snapshot) -> bool:
        newest = self.recent[0].id if self.recent else None
        self._apply(snap)
        if "requests" in snap.asked:
            return bool(self.recent) and self.recent[0].id != newest
        return True

    def _apply(self, snap: Snapshot) -> None:
        self.load_error = ("Some parts could not be loaded: " + "; ".join(snap.errors)) if snap.errors else ""
        if snap.page is not None and snap.histogram is not None and snap.since is not None:
            self._etag = snap.page.etag or ""
            self.tiles = stat_tiles(snap.page, snap.histogram, snap.since)
            self.recent = [request_view(row) for row in snap.page.items[:RECENT]]
        if snap.models is not None and snap.since is not None:
            self.timelines = model_timelines(snap.models, snap.since, snap.since + WINDOW)
        if snap.system is not None:
            system = snap.system
            self.upstreams = upstream_views(system)
            self.health_ok = system.status == "ok"
            self.health = "healthy" if self.health_ok else "degraded"
            self.system_line = (
                f"Switchyard {system.version} · up {format_duration(system.uptime_seconds)} · "
                f"{system.models_running} of {system.models_configured} models running · "
                f"{system.database_dialect} {format_bytes(system.database_bytes)}"
            )
        if snap.gpus is not None:
            self.gpus = gpu_views(snap.gpus)


# --------------------------------------------------------------------------- components


def _tile(tile: rx.Var[Tile]) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.text(tile.label, size="2", color=rx.color("gray", 11), weight="medium"),
            rx.text(
                tile.value,
                size="6",
                weight="bold",
                color=rx.cond(tile.alert, rx.color("red", 11), rx.color("gray", 12)),
                class_name="stat-value",
            ),
            sparkline(tile.points, tile.area, "accent"),
            rx.text(tile.hint, size="1", color=rx.color("gray", 10), trim="both"),
            spacing="1",
            width="100%",
        ),
        width="100%",
        min_width="0",
        data_stat=tile.key,
    )


def _section(title: str, *children: rx.Component, **props) -> rx.Component:
    return rx.vstack(rx.heading(title, size="4"), *children, width="100%", spacing="3", **props)


def _timeline_row(line: rx.Var[ModelTimeline]) -> rx.Component:
    return rx.hstack(
        rx.vstack(
            rx.link(line.model, href="/models/" + line.model, weight="medium", size="2", word_break="break-all"),
            rx.hstack(
                rx.badge(line.state, color_scheme=line.state_color, variant="soft", size="1"),
                rx.text(line.loads, size="1", color=rx.color("gray", 10)),
                spacing="2",
                align="center",
            ),
            spacing="1",
            width=["110px", "150px"],
            min_width=["110px", "150px"],
        ),
        rx.box(
            rx.foreach(
                line.segments,
                lambda seg: rx.box(
                    position="absolute",
                    top="4px",
                    bottom="4px",
                    left=seg.left.to_string() + "%",
                    width=seg.width.to_string() + "%",
                    background=rx.cond(seg.state == "ready", rx.color("green", 9), rx.color("amber", 9)),
                    border_radius="3px",
                    title=seg.label,
                ),
            ),
            position="relative",
            height="28px",
            flex="1",
            min_width="0",
            background=rx.color("gray", 3),
            border_radius="4px",
        ),
        width="100%",
        align="center",
        data_timeline=line.model,
    )


def _timeline() -> rx.Component:
    s = DashboardState
    return _section(
        "Model timeline",
        rx.cond(
            s.timelines.length() > 0,
            rx.card(
                rx.vstack(
                    rx.foreach(s.timelines, _timeline_row),
                    rx.hstack(
                        rx.text("24 h ago", size="1", color=rx.color("gray", 10)),
                        rx.spacer(),
                        rx.text("12 h", size="1", color=rx.color("gray", 10)),
                        rx.spacer(),
                        rx.text("now", size="1", color=rx.color("gray", 10)),
                        width="100%",
                        padding_left=["118px", "158px"],
                    ),
                    spacing="2",
                    width="100%",
                ),
                width="100%",
            ),
            empty_state("No local models are configured."),
        ),
    )


def _upstream_row(u: rx.Var[UpstreamView]) -> rx.Component:
    return rx.hstack(
        rx.icon(
            rx.cond(u.reachable, "circle-check", "circle-x"),
            size=16,
            color=rx.cond(u.reachable, rx.color("green", 9), rx.color("red", 9)),
        ),
        rx.text(u.name, size="2", weight="medium", word_break="break-all"),
        rx.badge(u.kind, variant="outline", size="1"),
        rx.spacer(),
        rx.text(u.detail, size="1", color=rx.color("gray", 10), text_align="right"),
        width="100%",
        align="center",
        data_upstream=u.name,
    )


def _health() -> rx.Component:
    s = DashboardState
    return _section(
        "Upstream health",
        rx.card(
            rx.vstack(
                rx.hstack(
                    rx.badge(s.health, color_scheme=rx.cond(s.health_ok, "green", "amber"), size="2"),
                    rx.text(s.system_line, size="1", color=rx.color("gray", 10)),
                    wrap="wrap",
                    align="center",
                    spacing="2",
                ),
                rx.cond(
                    s.upstreams.length() > 0,
                    rx.vstack(rx.foreach(s.upstreams, _upstream_row), width="100%", spacing="2"),
                    rx.text("No running model servers or peers to check.", size="2", color=rx.color("gray", 10)),
                ),
                spacing="3",
                width="100%",
            ),
            width="100%",
        ),
    )


def _gpu_card(g: rx.Var[GpuView]) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.text(g.name, weight="medium", size="2"),
            rx.text("Memory ", g.memory, size="1", color=rx.color("gray", 11)),
            rx.progress(value=g.memory_percent, width="100%"),
            rx.hstack(
                rx.text("Util ", g.utilization, size="1"),
                rx.text("Temp ", g.temperature, size="1"),
                rx.text("Power ", g.power, size="1"),
                spacing="3",
                wrap="wrap",
            ),
            spacing="2",
            width="100%",
        ),
        width="100%",
        data_gpu=g.name,
    )


def _gpus() -> rx.Component:
    s = DashboardState
    return _section(
        "GPUs",
        rx.cond(
            s.gpus.length() > 0,
            rx.grid(
                rx.foreach(s.gpus, _gpu_card), columns=rx.breakpoints(initial="1", md="2"), spacing="3", width="100%"
            ),
            empty_state("No GPU found on this machine: models run on the CPU.", icon="cpu"),
        ),
    )


def dashboard_page() -> rx.Component:
    s = DashboardState
    return page_shell(
        "Dashboard",
        error_callout(s.load_error),
        rx.grid(
            rx.foreach(s.tiles, _tile),
            columns=rx.breakpoints(initial="2", md="3", lg="5"),
            spacing="3",
            width="100%",
        ),
        rx.vstack(
            rx.hstack(
                rx.heading("Recent requests", size="4"),
                rx.spacer(),
                rx.link(
                    rx.hstack("All requests", rx.icon("arrow-right", size=14), align="center", spacing="1"),
                    href="/requests",
                    size="2",
                    white_space="nowrap",
                ),
                width="100%",
                align="center",
            ),
            rx.cond(
                s.recent.length() > 0,
                request_table(s.recent),
                empty_state("No requests yet. Point a client at the gateway (see Endpoints) and they appear here."),
            ),
            width="100%",
            spacing="3",
        ),
        _timeline(),
        rx.grid(_health(), _gpus(), columns=rx.breakpoints(initial="1", lg="2"), spacing="5", width="100%"),
        actions=live_badge(s.live_status),
    )
