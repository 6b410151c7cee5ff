"""`/requests`: the request log — filters by model and status, cursor paging, a detail drawer; live on page one."""

from __future__ import annotations

from typing import Any

import reflex as rx

from ui_reflex.api_client import AdminClient, ApiError, RequestPage, StatusFilter
from ui_reflex.layout import page_shell
from ui_reflex.live import LiveUpdates, admin_api
from ui_reflex.request_views import RequestView, request_view
from ui_reflex.widgets import empty_state, error_callout, field_row, live_badge, local_time, status_badge

PAGE_SIZE = 50
ALL = "all"  # the "no filter" choice (Radix selects cannot hold an empty value)

EMPTY_VIEW = RequestView(
    id=0,
    created_at="",
    method="",
    path="",
    model="",
    upstream_model="",
    status_code=0,
    ok=True,
    duration="",
    ttft="",
    prompt_tokens="",
    completion_tokens="",
    cached_tokens="",
    tokens="",
    rate="",
    streamed="",
    client="",
    error="",
)


class RequestsState(LiveUpdates, rx.State):
    rows: list[RequestView] = []
    model_filter: str = ALL
    status_filter: str = ALL
    model_options: list[str] = []
    page_number: int = 1
    has_next: bool = False
    load_error: str = ""
    detail: RequestView = EMPTY_VIEW
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
                self._show(await api.list_requests(**self._query_args()))
        except ApiError as exc:
            self.load_error = f"Could not load the request log: {exc.message}"
        return RequestsState.follow_live

    @rx.event
    async def set_model_filter(self, value: str):
        self.model_filter = value
        await self._reload_first_page()

    @rx.event
    async def set_status_filter(self, value: str):
        self.status_filter = value
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
    def open_detail(self, request_id: int):
        for row in self.rows:
            if row.id == request_id:
                self.detail, self.detail_open = row, True
                return

    @rx.event
    def set_detail_open(self, value: bool):
        self.detail_open = value

    # ---- live updates: only the first page follows new requests -----------

    def _live_topics(self) -> frozenset[str]:
        return frozenset({"request.completed"})

    def _live_query(self) -> dict[str, Any] | None:
        if self.page_number != 1:
            return None
        return {**self._query_args(), "if_none_match": self._etag or None}

    async def _live_fetch(self, api: AdminClient, query: dict[str, Any]) -> RequestPage | None:
        return await api.list_requests(**query)

    def _live_apply(self, result: RequestPage | None) -> bool:
        if result is None or self.page_number != 1:
            return False
        newest = self.rows[0].id if self.rows else None
        self._show(result)
        return bool(self.rows) and self.rows[0].id != newest

    # ---- internals ---------------------------------------------------------

    def _query_args(self) -> dict[str, Any]:
        status: StatusFilter | None = self.status_filter if self.status_filter in ("ok", "error") else None  # type: ignore[assignment]
        return {
            "limit": PAGE_SIZE,
            "before": self._cursors[-1],
            "model": None if self.model_filter == ALL else self.model_filter,
            "status": status,
        }

    async def _reload_first_page(self) -> None:
        self.page_number, self._cursors, self._etag = 1, [None], ""
        await self._fetch_current_page()

    async def _fetch_current_page(self) -> None:
        try:
            async with admin_api(self) as api:
                self._show(await api.list_requests(**self._query_args()))
        except ApiError as exc:
            self.load_error = f"Could not load the request log: {exc.message}"

    def _show(self, page: RequestPage | None) -> None:
        if page is None:
            return
        self.load_error = ""
        self.rows = [request_view(row) for row in page.items]
        self._next_cursor, self.has_next = page.next_cursor, page.next_cursor is not None
        self._etag = page.etag or ""
        if self.detail_open:
            updated = next((r for r in self.rows if r.id == self.detail.id), None)
            if updated is not None:
                self.detail = updated


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


def _filters() -> rx.Component:
    return rx.hstack(
        rx.select.root(
            rx.select.trigger(aria_label="Model", id="filter-model"),
            rx.select.content(
                rx.select.item("All models", value=ALL),
                rx.foreach(RequestsState.model_options, lambda m: rx.select.item(m, value=m)),
            ),
            value=RequestsState.model_filter,
            on_change=RequestsState.set_model_filter,
        ),
        rx.select.root(
            rx.select.trigger(aria_label="Status", id="filter-status"),
            rx.select.content(
                rx.select.item("All statuses", value=ALL),
                rx.select.item("Successful", value="ok"),
                rx.select.item("Errors", value="error"),
            ),
            value=RequestsState.status_filter,
            on_change=RequestsState.set_status_filter,
        ),
        spacing="3",
        wrap="wrap",
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


def _detail_drawer() -> rx.Component:
    d = RequestsState.detail
    return rx.drawer.root(
        rx.drawer.overlay(z_index="50"),
        rx.drawer.portal(
            rx.drawer.content(
                rx.vstack(
                    rx.hstack(
                        rx.heading("Request ", d.id, size="5"),
                        rx.spacer(),
                        rx.drawer.close(rx.icon_button(rx.icon("x"), variant="ghost", aria_label="Close details")),
                        width="100%",
                        align="center",
                    ),
                    rx.hstack(
                        status_badge(d.status_code, d.ok), rx.code(d.method, " ", d.path), spacing="2", wrap="wrap"
                    ),
                    rx.divider(),
                    field_row("Time", rx.text(local_time(d.created_at, "YYYY-MM-DD HH:mm:ss"), size="2")),
                    field_row("Model", d.model),
                    field_row("Upstream model", d.upstream_model),
                    field_row("Duration", d.duration),
                    field_row("Time to first token", d.ttft),
                    field_row("Prompt tokens", d.prompt_tokens),
                    field_row("Completion tokens", d.completion_tokens),
                    field_row("Cached tokens", d.cached_tokens),
                    field_row("Speed", d.rate),
                    field_row("Streamed", d.streamed),
                    field_row("Client", d.client),
                    rx.cond(
                        d.error != "",
                        rx.callout(d.error, icon="triangle-alert", color_scheme="red", width="100%"),
                    ),
                    spacing="3",
                    padding="20px",
                    width="100%",
                    id="request-detail",
                ),
                top="0",
                right="0",
                left="auto",
                height="100%",
                width="min(440px, 100vw)",
                overflow_y="auto",
                background=rx.color("gray", 1),
                z_index="60",
            )
        ),
        open=RequestsState.detail_open,
        on_open_change=RequestsState.set_detail_open,
        direction="right",
    )


def requests_page() -> rx.Component:
    return page_shell(
        "Requests",
        error_callout(RequestsState.load_error),
        rx.hstack(_filters(), rx.spacer(), _pager(), width="100%", wrap="wrap", spacing="3", align="center"),
        rx.cond(
            RequestsState.rows.length() > 0,
            request_table(RequestsState.rows, on_select=RequestsState.open_detail),
            empty_state("No requests match. Requests through the gateway appear here as they finish."),
        ),
        _detail_drawer(),
        actions=live_badge(RequestsState.live_status),
    )
