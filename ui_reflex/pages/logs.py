"""`/logs`: live model server (and gateway) logs, one source at a time, streamed only while the page is open.

The follower is a background task chained from the page load, so Reflex cancels it when the tab leaves the
page or closes (its `/api/log-events` stream closes with it). Choosing another source bumps a generation
number: the running follower notices and ends, and a new one starts for the new source.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import reflex as rx

from ui_reflex.api_client import ApiError, LogLine, NotSignedIn
from ui_reflex.layout import page_shell
from ui_reflex.session import admin_api, login_url
from ui_reflex.widgets import error_callout, live_badge

MAX_LINES = 1000
FLUSH_SECONDS = 0.15
"""Lines arriving within this time reach the page together."""
ALL = "all"
GATEWAY = "proxy"


@dataclass(frozen=True)
class LogRow:
    key: int
    time: str
    source: str
    text: str


def log_row(key: int, line: LogLine) -> LogRow:
    moment = datetime.fromtimestamp(line.at, UTC) if line.at else datetime.now(UTC)
    return LogRow(key, f"{moment:%H:%M:%S}", line.source, line.text)


class LogsState(rx.State):
    source: str = ALL
    sources: list[str] = []
    rows: list[LogRow] = []
    live_status: str = "connecting"
    load_error: str = ""

    _generation: int = 0
    _counter: int = 0

    @rx.event
    async def load(self):
        self.rows, self.load_error = [], ""
        try:
            async with admin_api(self) as api:
                self.sources = [m.id for m in await api.local_models()]
        except ApiError as exc:
            self.load_error = f"Could not list the models: {exc.message}"
        wanted = self.router.url.query_parameters.get("model", "")
        if wanted in self.sources:
            self.source = wanted
        elif self.source not in (ALL, GATEWAY, *self.sources):
            self.source = ALL
        self._generation += 1
        return LogsState.follow

    @rx.event
    def choose_source(self, value: str):
        self.source, self.rows = value, []
        self._generation += 1
        return LogsState.follow

    @rx.event
    def clear(self):
        self.rows = []

    @rx.event(background=True)
    async def follow(self):
        async with self:
            generation, source = self._generation, self.source
            self.live_status = "connecting"
        wire_source = "" if source == ALL else source
        history = True  # the recent lines first; after a reconnect only what is new
        while True:
            try:
                async with admin_api(self) as api:
                    lines = api.log_lines(wire_source, history=history)
                    history = False
                    if not await self._stream(lines, generation):
                        return
            except NotSignedIn:
                return rx.redirect(login_url("/logs"))
            except (ApiError, httpx.HTTPError) as exc:
                async with self:
                    if self._generation != generation:
                        return
                    self.live_status = "offline"
                    self.load_error = f"The log stream stopped: {getattr(exc, 'message', exc)}"
            await asyncio.sleep(3.0)
            async with self:
                if self._generation != generation:
                    return

    async def _stream(self, lines: AsyncIterator[LogLine], generation: int) -> bool:
        """Copy `lines` to the page in small batches; False once the page moved on (or the stream ended)."""
        queue: asyncio.Queue[LogLine | BaseException | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for line in lines:
                    await queue.put(line)
                await queue.put(None)
            except (ApiError, httpx.HTTPError) as exc:  # handed to the loop below, which raises it there
                await queue.put(exc)

        reader = asyncio.create_task(read())
        async with self:
            if self._generation != generation:
                reader.cancel()
                return False
            self.live_status = "live"
        try:
            while True:
                batch: list[LogLine] = []
                item = await queue.get()
                deadline = time.monotonic() + FLUSH_SECONDS
                while isinstance(item, LogLine):
                    batch.append(item)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(queue.get(), remaining)
                    except TimeoutError:
                        break
                if batch and not await self._flush(generation, batch):
                    return False
                if isinstance(item, BaseException):
                    raise item
                if item is None:
                    return True  # the server ended the stream: reconnect
        finally:
            reader.cancel()

    async def _flush(self, generation: int, lines: list[LogLine]) -> bool:
        """Append `lines` unless the page moved on to another source; False when this follower should end."""
        async with self:
            if self._generation != generation:
                return False
            rows = []
            for line in lines:
                self._counter += 1
                rows.append(log_row(self._counter, line))
            self.rows = [*self.rows, *rows][-MAX_LINES:]
            self.load_error = ""
        return True


def _line(row: rx.Var[LogRow]) -> rx.Component:
    return rx.el.div(
        rx.el.span(row.time, " ", style={"color": "var(--gray-10)"}),
        rx.cond(
            LogsState.source == ALL,
            rx.el.span("[", row.source, "] ", style={"color": "var(--accent-11)"}),
        ),
        rx.el.span(row.text),
        style={"white_space": "pre-wrap", "word_break": "break-all"},
        data_log_source=row.source,
    )


def logs_page() -> rx.Component:
    s = LogsState
    return page_shell(
        "Logs",
        error_callout(s.load_error),
        rx.hstack(
            rx.select.root(
                rx.select.trigger(aria_label="Log source", id="log-source"),
                rx.select.content(
                    rx.select.item("Everything", value=ALL),
                    rx.select.item("Gateway", value=GATEWAY),
                    rx.foreach(s.sources, lambda m: rx.select.item(m, value=m)),
                ),
                value=s.source,
                on_change=s.choose_source,
            ),
            rx.button(rx.icon("eraser", size=14), "Clear", variant="soft", color_scheme="gray", on_click=s.clear),
            rx.text(s.rows.length(), " lines", size="2", color=rx.color("gray", 10)),
            spacing="3",
            align="center",
            wrap="wrap",
        ),
        rx.box(
            rx.box(rx.foreach(s.rows, _line)),
            font_family="monospace",
            font_size="12px",
            line_height="1.5",
            height="calc(100vh - 220px)",
            min_height="320px",
            overflow_y="auto",
            width="100%",
            padding="10px",
            border_radius="8px",
            background=rx.color("gray", 2),
            border=f"1px solid {rx.color('gray', 5)}",
            display="flex",
            flex_direction="column-reverse",
            id="log-lines",
        ),
        actions=live_badge(s.live_status),
    )
