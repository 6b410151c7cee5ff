"""`/requests`: the request log — search and filters, a 24-hour histogram, cursor paging, and a detail drawer
with the prompt, the response, timings, cost, the routing decision and the credentials injected; page one
follows new requests live."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import reflex as rx

from ui_reflex.api_client import AdminClient, ApiError, Histogram, RequestPage, RequestQuery
from ui_reflex.charts import Bar, bar_histogram, histogram_bars
from ui_reflex.layout import page_shell
from ui_reflex.live import LiveUpdates
from ui_reflex.request_views import RequestDetailView, RequestView, request_detail_view, request_view
from ui_reflex.session import admin_api
from ui_reflex.widgets import empty_state, error_callout, field_row, live_badge, local_time, status_badge

PAGE_SIZE = 50
ALL = "all"  # the "no filter" choice (Radix selects cannot hold an empty value)
HISTOGRAM_WINDOW = timedelta(hours=24)
HISTOGRAM_BUCKETS = 48
STATUS_CHOICES = (
    ("Successful (2xx)", "2xx"),
    ("Client errors (4xx)", "4xx"),
    ("Server errors (5xx)", "5xx"),
    ("All errors", "error"),
)


@dataclass(frozen=True)
class PageResult:
    page: RequestPage | None
    histogram: Histogram | None
    query: RequestQuery | None = None  # what was asked: a live refresh for older filters is dropped


def histogram_view(histogram: Histogram) -> tuple[list[Bar], str]:
    """Bars and a one-line summary for the request histogram."""
    labels = []
    for bucket in histogram.buckets:
        errors = f", {bucket.errors} failed" if bucket.errors else ""
        labels.append(f"{bucket.start:%H:%M} UTC: {bucket.count} requests{errors}")
    total = sum(b.count for b in histogram.buckets)
    errors = sum(b.errors for b in histogram.buckets)
    summary = f"{total} requests in the last 24 hours" + (f", {errors} failed" if errors else "")
    return histogram_bars([b.count for b in histogram.buckets], [b.errors for b in histogram.buckets], labels), summary


class RequestsState(LiveUpdates, rx.State):
    rows: list[RequestView] = []
    search: str = ""
    model_filter: str = ALL
    status_filter: str = ALL
    key_filter: str = ALL
    model_options: list[str] = []
    key_options: list[str] = []
    page_number: int = 1
    has_next: bool = False
    load_error: str = ""
    bars: list[Bar] = []
    histogram_summary: str = ""
    detail: RequestDetailView | None = None
    detail_error: str = ""
    detail_open: bool = False

    _cursors: list[int | None] = [None]  # the `before` cursor of each page visited; page one has none
    _next_cursor: int | None = None
    _etag: str = ""

    @rx.event
    async def load(self):
        self.page_number, self._cursors, self._etag, self.detail_open = 1, [None], "", False
        try:
            async with admin_api(self) as api:
                models = await api.list_models()
                self.model_options = sorted({m.id for m in models})
                try:
                    self.key_options = sorted({k.name for k in await api.list_keys() if k.name})
                except ApiError:
                    self.key_options = []
                self._show(await self._fetch(api, self._page_query(with_etag=False)))
        except ApiError as exc:
            self.load_error = f"Could not load the request log: {exc.message}"
        return RequestsState.follow_live

    @rx.event
    async def run_search(self, form: dict[str, Any]):
        self.search = str(form.get("q") or "").strip()
        await self._reload_first_page()

    @rx.event
    async def set_model_filter(self, value: str):
        self.model_filter = value
        await self._reload_first_page()

    @rx.event
    async def set_status_filter(self, value: str):
        self.status_filter = value
        await self._reload_first_page()

    @rx.event
    async def set_key_filter(self, value: str):
        self.key_filter = value
        await self._reload_first_page()

    @rx.event
    async def next_page(self):
        if not self.has_next:
            return
        self._cursors = [*self._cursors, self._next_cursor]
        self.page_number += 1
        await self._fetch_current_page()

    @rx.event
    async def previous_page(self):
        if self.page_number <= 1:
            return
        self._cursors = self._cursors[:-1]
        self.page_number -= 1
        await self._fetch_current_page()

    @rx.event
    async def open_detail(self, request_id: int):
        self.detail_open, self.detail_error = True, ""
        try:
            async with admin_api(self) as api:
                self.detail = request_detail_view(await api.request_detail(request_id))
        except ApiError as exc:
            self.detail, self.detail_error = None, f"Could not load request {request_id}: {exc.message}"

    @rx.event
    def set_detail_open(self, value: bool):
        self.detail_open = value

    # ---- live updates: only the first page follows new requests -----------

    def _live_topics(self) -> frozenset[str]:
        return frozenset({"request.completed"})

    def _live_query(self, topics: frozenset[str]) -> dict[str, Any] | None:
        if self.page_number != 1:
            return None
        return self._page_query(with_etag=True)

    async def _live_fetch(self, api: AdminClient, query: dict[str, Any]) -> PageResult:
        return await self._fetch(api, query)

    def _live_apply(self, result: PageResult) -> bool:
        if result.page is None or self.page_number != 1 or result.query != self._filters():
            return False  # the filters changed while this refresh was on its way
        newest = self.rows[0].id if self.rows else None
        self._show(result)
        return bool(self.rows) and self.rows[0].id != newest

    # ---- internals ---------------------------------------------------------

    def _filters(self) -> RequestQuery:
        return RequestQuery(
            q=self.search,
            model="" if self.model_filter == ALL else self.model_filter,
            status="" if self.status_filter == ALL else self.status_filter,
            key="" if self.key_filter == ALL else self.key_filter,
        )

    def _page_query(self, *, with_etag: bool) -> dict[str, Any]:
        return {
            "limit": PAGE_SIZE,
            "before": self._cursors[-1],
            "query": self._filters(),
            "if_none_match": (self._etag or None) if with_etag else None,
        }

    @staticmethod
    async def _fetch(api: AdminClient, query: dict[str, Any]) -> PageResult:
        page = await api.list_requests(**query)
        histogram = None
        if page is not None and query["before"] is None:
            until = datetime.now(UTC)
            histogram = await api.request_histogram(
                since=until - HISTOGRAM_WINDOW, until=until, buckets=HISTOGRAM_BUCKETS, query=query["query"]
            )
        return PageResult(page, histogram, query["query"])

    async def _reload_first_page(self) -> None:
        self.page_number, self._cursors, self._etag = 1, [None], ""
        await self._fetch_current_page()

    async def _fetch_current_page(self) -> None:
        try:
            async with admin_api(self) as api:
                self._show(await self._fetch(api, self._page_query(with_etag=False)))
        except ApiError as exc:
            self.load_error = f"Could not load the request log: {exc.explanation}"

    def _show(self, result: PageResult) -> None:
        page = result.page
        if page is None:
            return
        self.load_error = ""
        self.rows = [request_view(row) for row in page.items]
        self._next_cursor, self.has_next = page.next_cursor, page.next_cursor is not None
        self._etag = page.etag or ""
        if result.histogram is not None:
            self.bars, self.histogram_summary = histogram_view(result.histogram)


# --------------------------------------------------------------------------- components


def _cell(content: rx.Component | rx.Var | str, *, wide_only: bool = False, **props: Any) -> rx.Component:
    if wide_only:
        props["display"] = ["none", "none", "table-cell"]
    return rx.table.cell(content, white_space="nowrap", **props)


def _header(label: str, *, wide_only: bool = False) -> rx.Component:
    props: dict[str, Any] = {"display": ["none", "none", "table-cell"]} if wide_only else {}
    return rx.table.column_header_cell(label, white_space="nowrap", **props)


def request_table(rows: rx.Var[list[RequestView]], *, on_select: Any = None) -> rx.Component:
    """The request table used by the Requests page and the dashboard's recent list."""

    def row(view: rx.Var[RequestView]) -> rx.Component:
        return rx.table.row(
            _cell(local_time(view.created_at)),
            _cell(rx.text(view.model, weight="medium")),
            _cell(rx.code(view.path, variant="ghost"), wide_only=True),
            _cell(status_badge(view.status_code, view.ok)),
            _cell(view.duration),
            _cell(view.ttft, wide_only=True),
            _cell(view.tokens, wide_only=True),
            _cell(view.rate, wide_only=True),
            _cell(view.cost, wide_only=True),
            _cell(view.key, wide_only=True),
            on_click=on_select(view.id) if on_select is not None else None,
            cursor="pointer" if on_select is not None else "default",
            _hover={"background": rx.color("gray", 3)},
            data_request_id=view.id,
        )

    return rx.box(
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    _header("Time"),
                    _header("Model"),
                    _header("Endpoint", wide_only=True),
                    _header("Status"),
                    _header("Duration"),
                    _header("TTFT", wide_only=True),
                    _header("Tokens in → out", wide_only=True),
                    _header("Speed", wide_only=True),
                    _header("Cost", wide_only=True),
                    _header("Key", wide_only=True),
                )
            ),
            rx.table.body(rx.foreach(rows, row)),
            variant="surface",
            size="1",
            width="100%",
        ),
        width="100%",
        overflow_x="auto",
    )


def _select(
    label: str, element_id: str, value: rx.Var, on_change: Any, all_label: str, options: rx.Var | tuple
) -> rx.Component:
    """A filter: "all" first, then `options` — a state list (values shown as they are) or (label, value) pairs."""
    if isinstance(options, rx.Var):
        items: list[rx.Component] = [rx.foreach(options, lambda m: rx.select.item(m, value=m))]
    else:
        items = [rx.select.item(text, value=choice) for text, choice in options]
    return rx.select.root(
        rx.select.trigger(aria_label=label, id=element_id),
        rx.select.content(rx.select.item(all_label, value=ALL), *items),
        value=value,
        on_change=on_change,
    )


def _filters() -> rx.Component:
    s = RequestsState
    return rx.flex(
        rx.form(
            rx.hstack(
                rx.input(
                    rx.input.slot(rx.icon("search", size=16)),
                    name="q",
                    placeholder="Search path, model, error",
                    default_value=s.search,
                    id="request-search",
                    width=["100%", "240px"],
                ),
                rx.button("Search", type="submit", variant="soft", id="request-search-submit"),
                spacing="2",
            ),
            on_submit=s.run_search,
            reset_on_submit=False,
        ),
        _select("Model", "filter-model", s.model_filter, s.set_model_filter, "All models", s.model_options),
        _select("Status", "filter-status", s.status_filter, s.set_status_filter, "All statuses", STATUS_CHOICES),
        _select("API key", "filter-key", s.key_filter, s.set_key_filter, "All keys", s.key_options),
        spacing="3",
        wrap="wrap",
        align="center",
    )


def _pager() -> rx.Component:
    return rx.hstack(
        rx.button(
            rx.icon("chevron-left", size=16),
            "Newer",
            variant="soft",
            disabled=RequestsState.page_number <= 1,
            on_click=RequestsState.previous_page,
            id="page-newer",
        ),
        rx.text("Page ", RequestsState.page_number, size="2", color=rx.color("gray", 11)),
        rx.button(
            "Older",
            rx.icon("chevron-right", size=16),
            variant="soft",
            disabled=~RequestsState.has_next,
            on_click=RequestsState.next_page,
            id="page-older",
        ),
        align="center",
        spacing="3",
    )


def _text_block(title: str, text: rx.Var[str], note: rx.Var[str], block_id: str) -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.text(title, size="2", weight="bold"),
            rx.text(note, size="1", color=rx.color("gray", 10)),
            align="baseline",
            spacing="2",
            wrap="wrap",
        ),
        rx.cond(
            text != "",
            rx.box(
                rx.text(text, size="2", white_space="pre-wrap", word_break="break-word", font_family="monospace"),
                max_height="280px",
                overflow_y="auto",
                width="100%",
                padding="8px",
                border_radius="6px",
                background=rx.color("gray", 3),
                id=block_id,
            ),
        ),
        spacing="1",
        width="100%",
    )


def _headers(title: str, lines: Any) -> rx.Component:
    return rx.accordion.root(
        rx.accordion.item(
            header=title,
            content=rx.vstack(
                rx.foreach(
                    lines,
                    lambda h: rx.text(
                        rx.text.strong(h.name, ": "), h.value, size="1", font_family="monospace", word_break="break-all"
                    ),
                ),
                spacing="1",
                width="100%",
            ),
        ),
        collapsible=True,
        type="single",
        variant="ghost",
        width="100%",
    )


def _detail_body(d: rx.Var[RequestDetailView]) -> rx.Component:
    row = d.row
    return rx.vstack(
        rx.hstack(status_badge(row.status_code, row.ok), rx.code(row.method, " ", row.path), spacing="2", wrap="wrap"),
        rx.cond(row.error != "", rx.callout(row.error, icon="triangle-alert", color_scheme="red", width="100%")),
        rx.divider(),
        field_row("Time", rx.text(local_time(row.created_at, "YYYY-MM-DD HH:mm:ss"), size="2")),
        field_row("Model", row.model),
        field_row("Upstream model", d.upstream_model),
        field_row("API key", row.key),
        field_row("Client", d.client_name),
        field_row("End user", d.end_user),
        field_row("Session", d.session_id),
        field_row("Address", d.client_addr),
        field_row("Duration", row.duration),
        field_row("Time to first token", row.ttft),
        field_row("Prompt tokens", row.prompt_tokens),
        field_row("Completion tokens", row.completion_tokens),
        field_row("Cached tokens", row.cached_tokens),
        field_row("Speed", row.rate),
        field_row("Cost", row.cost),
        field_row("Streamed", row.streamed),
        field_row("Size", d.bytes_in_out),
        rx.divider(),
        rx.vstack(
            rx.text("Routing decision", size="2", weight="bold"),
            rx.text(d.routing, size="2", id="routing-decision"),
            field_row("Rule", d.policy_rule_id),
            field_row("Action", d.policy_action),
            field_row("Routed model", d.routed_model),
            spacing="1",
            width="100%",
        ),
        rx.vstack(
            rx.text("Credentials injected", size="2", weight="bold"),
            rx.cond(
                d.credentials.length() > 0,
                rx.hstack(rx.foreach(d.credentials, lambda c: rx.badge(c, variant="soft")), wrap="wrap", spacing="1"),
                rx.text("None: no stored credential was added to this request.", size="2", color=rx.color("gray", 10)),
            ),
            spacing="1",
            width="100%",
            id="credential-audit",
        ),
        rx.divider(),
        rx.cond(d.capture_note != "", rx.text(d.capture_note, size="2", color=rx.color("gray", 10))),
        _text_block("Prompt", d.prompt, d.prompt_note, "request-prompt"),
        _text_block("Response", d.response, d.response_note, "request-response"),
        _headers("Request headers", d.request_headers),
        _headers("Response headers", d.response_headers),
        spacing="3",
        width="100%",
    )


def _detail_drawer() -> rx.Component:
    s = RequestsState
    return rx.drawer.root(
        rx.drawer.overlay(z_index="50"),
        rx.drawer.portal(
            rx.drawer.content(
                rx.vstack(
                    rx.hstack(
                        rx.heading(rx.cond(s.detail, "Request " + s.detail.row.id.to_string(), "Request"), size="5"),
                        rx.spacer(),
                        rx.drawer.close(rx.icon_button(rx.icon("x"), variant="ghost", aria_label="Close details")),
                        width="100%",
                        align="center",
                    ),
                    error_callout(s.detail_error),
                    rx.cond(s.detail, _detail_body(s.detail.to(RequestDetailView)), rx.spinner()),
                    spacing="3",
                    padding="20px",
                    width="100%",
                    id="request-detail",
                ),
                top="0",
                right="0",
                left="auto",
                height="100%",
                width="min(560px, 100vw)",
                overflow_y="auto",
                background=rx.color("gray", 1),
                z_index="60",
            )
        ),
        open=s.detail_open,
        on_open_change=s.set_detail_open,
        direction="right",
    )


def requests_page() -> rx.Component:
    s = RequestsState
    return page_shell(
        "Requests",
        error_callout(s.load_error),
        _filters(),
        rx.card(
            rx.vstack(
                rx.text(s.histogram_summary, size="2", color=rx.color("gray", 11), id="histogram-summary"),
                bar_histogram(s.bars),
                rx.hstack(
                    rx.text("24 h ago", size="1"),
                    rx.spacer(),
                    rx.text("now", size="1"),
                    width="100%",
                    color=rx.color("gray", 10),
                ),
                spacing="2",
                width="100%",
            ),
            width="100%",
        ),
        rx.hstack(rx.spacer(), _pager(), width="100%", align="center"),
        rx.cond(
            s.rows.length() > 0,
            request_table(s.rows, on_select=s.open_detail),
            empty_state("No requests match. Requests through the gateway appear here as they finish."),
        ),
        _detail_drawer(),
        actions=live_badge(s.live_status),
    )
