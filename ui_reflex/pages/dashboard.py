"""`/`: headline numbers over the recent requests and the newest requests, updated live."""

from __future__ import annotations

import reflex as rx

from ui_reflex.api_client import AdminClient, ApiError, RequestPage
from ui_reflex.layout import page_shell
from ui_reflex.live import LiveUpdates, admin_api
from ui_reflex.pages.requests import request_table
from ui_reflex.request_views import RequestView, format_count, format_rate, request_view, summarize_requests
from ui_reflex.widgets import empty_state, error_callout, live_badge, stat_tile

WINDOW = 200
"""How many of the newest requests the stat tiles summarize."""
RECENT = 10


class DashboardState(LiveUpdates, rx.State):
    requests: str = "—"
    tokens: str = "—"
    rate: str = "—"
    errors: str = "—"
    has_errors: bool = False
    window_hint: str = ""
    error_hint: str = ""
    recent: list[RequestView] = []
    load_error: str = ""

    _etag: str = ""

    @rx.event
    async def load(self):
        self._etag = ""
        try:
            async with admin_api(self) as api:
                self._show(await api.list_requests(limit=WINDOW))
        except ApiError as exc:
            self.load_error = f"Could not load recent requests: {exc.message}"
        return DashboardState.follow_live

    def _live_topics(self) -> frozenset[str]:
        return frozenset({"request.completed"})

    def _live_query(self) -> str:
        return self._etag

    async def _live_fetch(self, api: AdminClient, etag: str) -> RequestPage | None:
        return await api.list_requests(limit=WINDOW, if_none_match=etag or None)

    def _live_apply(self, page: RequestPage | None) -> bool:
        if page is None:
            return False
        newest = self.recent[0].id if self.recent else None
        self._show(page)
        return bool(self.recent) and self.recent[0].id != newest

    def _show(self, page: RequestPage) -> None:
        self.load_error = ""
        self._etag = page.etag or ""
        rows = page.items
        stats = summarize_requests(rows)
        self.requests = format_count(stats.requests)
        self.tokens = format_count(stats.tokens)
        self.rate = format_rate(stats.tokens_per_second).removesuffix(" tok/s")
        self.errors = format_count(stats.errors)
        self.has_errors = stats.errors > 0
        self.error_hint = f"{stats.error_rate:.1%} of requests" if stats.requests else "no requests yet"
        self.window_hint = f"the last {stats.requests} requests" if stats.requests >= WINDOW else "all logged requests"
        self.recent = [request_view(row) for row in rows[:RECENT]]


def dashboard_page() -> rx.Component:
    s = DashboardState
    return page_shell(
        "Dashboard",
        error_callout(s.load_error),
        rx.grid(
            stat_tile("Requests", s.requests, s.window_hint),
            stat_tile("Tokens", s.tokens, "prompt + completion"),
            stat_tile("Tokens/s", s.rate, "generation speed"),
            stat_tile("Errors", s.errors, s.error_hint, alert=s.has_errors),
            columns=rx.breakpoints(initial="2", md="4"),
            spacing="4",
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
        actions=live_badge(s.live_status),
    )
