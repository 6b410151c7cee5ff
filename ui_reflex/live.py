"""Live pages: follow the server's event stream while a page is open, poll when the stream is unavailable.

A page state mixes in :class:`LiveUpdates`, says which event types concern it and how to refresh, and
chains ``follow_live`` from its ``on_load``. Reflex 0.10 cancels background tasks chained from a page load
when the tab navigates elsewhere or disconnects (checked in the e2e tests' server log), so each follower
lives exactly as long as its page is open, and nothing is streamed for pages nobody looks at.

Refreshes go through the API like everything else: an event only says "something changed"; the page then
asks the API for the current rows (with ``If-None-Match``), so a missed or coalesced event never leaves the
page wrong. A burst of events is coalesced into one refresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import reflex as rx

from ui_reflex.api_client import AdminClient, ApiError, NotFound, NotSignedIn
from ui_reflex.session import admin_api, login_url

log = logging.getLogger("switchyard.ui")

POLL_SECONDS = 5.0
"""Refresh period while the event stream is unavailable."""
STREAM_RETRY_SECONDS = 30.0
"""How long to poll before trying the event stream again (after a 404 or a dropped stream)."""
COALESCE_SECONDS = 0.2
"""Events arriving this close together cause one refresh."""
SETTLE_DELAYS = (0.3, 0.6, 1.2)
"""Retries when an event announced new data that the API does not show yet (the request log is written
in batches just after `request.completed` is published)."""


class LiveUpdates(rx.State, mixin=True):
    """Mixin for page states that update live. Subclasses implement the three ``_live_*`` hooks."""

    live_status: str = "connecting"  # live | polling | offline

    # ---- hooks -------------------------------------------------------------

    def _live_topics(self) -> frozenset[str]:
        """Event types that should refresh this page."""
        return frozenset()

    def _live_query(self, topics: frozenset[str]) -> Any | None:
        """What to fetch after events of `topics` (all of them when polling), read from the state under its lock;
        None skips this refresh (e.g. an older page)."""
        return None

    async def _live_fetch(self, api: AdminClient, query: Any) -> Any:
        """Fetch with `query`; runs without the state lock, so it must not read or write state."""
        return None

    def _live_apply(self, result: Any) -> bool:
        """Put `result` into the state (under its lock); True when it brought something new."""
        return False

    def _live_heartbeat(self) -> float | None:
        """Seconds between the stream's heartbeats (None: the server's default); a page that lists
        "heartbeat" in its topics refreshes that often even when nothing else happens."""
        return None

    # ---- machinery ---------------------------------------------------------

    @rx.event(background=True)
    async def follow_live(self):
        """Follow `/api/events` until the page closes; poll every POLL_SECONDS while the stream is down."""
        while True:
            try:
                await self._follow_stream()
                retry_after = 1.0  # the server closed the stream (restart, reload): reconnect soon
            except NotSignedIn:
                async with self:
                    self.live_status = "offline"
                    path = self.router.url.path
                return rx.redirect(login_url(path))  # the session ended (signed out elsewhere, expired)
            except NotFound:
                retry_after = STREAM_RETRY_SECONDS
            except (ApiError, httpx.HTTPError) as exc:
                log.debug("event stream unavailable: %s", exc)
                retry_after = STREAM_RETRY_SECONDS / 3
            deadline = time.monotonic() + retry_after
            while True:
                try:
                    reachable = await self._refresh_in_background()
                except NotSignedIn:
                    async with self:
                        self.live_status = "offline"
                        path = self.router.url.path
                    return rx.redirect(login_url(path))
                async with self:
                    self.live_status = "polling" if reachable is not None else "offline"
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                await asyncio.sleep(min(POLL_SECONDS, remaining))

    async def _follow_stream(self) -> None:
        async with self:
            topics = self._live_topics()
        changed = asyncio.Event()
        fired: set[str] = set(topics)  # the first refresh catches up on everything

        async def refresh_on_change() -> None:
            while True:
                await changed.wait()
                await asyncio.sleep(COALESCE_SECONDS)
                changed.clear()
                batch = frozenset(fired)
                fired.clear()
                for delay in (*SETTLE_DELAYS, None):
                    if await self._refresh_in_background(batch) or delay is None or changed.is_set():
                        break
                    await asyncio.sleep(delay)

        async with admin_api(self) as api:
            events = api.events(heartbeat=self._live_heartbeat())
            try:
                await anext(events)  # raises NotFound/Unreachable before the page claims to be live
            except StopAsyncIteration:
                return
            async with self:
                self.live_status = "live"
            refresher = asyncio.create_task(refresh_on_change())
            try:
                changed.set()  # catch up on anything between the page load and the subscription
                async for event in events:
                    if event.type in topics:
                        fired.add(event.type)
                        changed.set()
            finally:
                refresher.cancel()
                await events.aclose()

    async def _refresh_in_background(self, topics: frozenset[str] | None = None) -> bool | None:
        """One refresh (after events of `topics`; None: everything) from a background task: True/False as
        `_live_apply` says, None if the API failed."""
        async with self:
            query = self._live_query(self._live_topics() if topics is None else topics)
        if query is None:
            return False
        try:
            async with admin_api(self) as api:
                result = await self._live_fetch(api, query)
        except NotSignedIn:
            raise
        except ApiError as exc:
            log.debug("live refresh failed: %s", exc)
            return None
        async with self:
            return self._live_apply(result)
