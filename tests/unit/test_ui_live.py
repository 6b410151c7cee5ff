"""Live pages and GPU cards, without a browser or a server.

The live follower (`ui_reflex.live`) runs as Reflex runs it: a background task on a `StateProxy` of a real
page state in an in-memory state manager. The admin API behind it is `httpx.MockTransport` answering the way
the real endpoints answer (a scripted `/api/events` stream, the request log with ETags, `/api/gpu`), and the
follower's clock and `asyncio.sleep` are replaced by a fake clock that jumps instead of waiting, so "every 5 s"
is checked as fake seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pytest import approx
from reflex.istate.data import RouterData
from reflex.istate.manager.memory import StateManagerMemory
from reflex.istate.manager.token import BaseStateToken
from reflex.istate.proxy import StateProxy
from reflex.state import State
from reflex_base.event.context import EventContext

from ui_reflex import live
from ui_reflex.api_client import AdminClient, GpuInfo
from ui_reflex.pages import dashboard as dashboard_page
from ui_reflex.pages import requests as requests_page
from ui_reflex.pages.dashboard import DashboardState, GpuView, gpu_views
from ui_reflex.pages.requests import RequestsState

REAL_SLEEP = asyncio.sleep
GIB = 1024**3
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_tabs = itertools.count(1)


def row(id_: int) -> dict[str, Any]:
    return {
        "id": id_, "created_at": (NOW + timedelta(seconds=id_)).isoformat(), "method": "POST",
        "path": "/v1/chat/completions", "model": "tiny", "upstream_model": "tiny", "status_code": 200,
        "duration_ms": 120.0, "ttft_ms": 20.0, "prompt_tokens": 5, "completion_tokens": 10, "cached_tokens": None,
        "tokens_per_second": 50.0, "streamed": True, "client_addr": "127.0.0.1", "error": None,
    }  # fmt: skip


def gpu(index: int, name: str, vendor: str, used: int, total: int, **extra: Any) -> dict[str, Any]:
    """One entry of `GET /api/gpu` as the server serialises it (api/admin/system_status.py GpuInfo)."""
    return {
        "index": index, "name": name, "vendor": vendor, "memory_used_bytes": used, "memory_total_bytes": total,
        "utilization_percent": None, "temperature_c": None, "power_watts": None, "unified_memory": False,
        "core_count": None, "uuid": None, "bus_id": None, **extra,
    }  # fmt: skip


# --------------------------------------------------------------------------- a clock the follower cannot tell apart


class FakeClock:
    """`time.monotonic` and `asyncio.sleep` for `ui_reflex.live`: sleeping moves the clock instead of waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class FakeAsyncio:
    """The `asyncio` module as `ui_reflex.live` sees it: the real one, except `sleep`."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float) -> None:
        self._clock.now += delay
        await REAL_SLEEP(0)


# --------------------------------------------------------------------------- the admin API, over HTTP

DROP, CLOSE = object(), object()


@dataclass
class Call:
    at: float  # fake seconds since the test started
    path: str
    status: int  # what the server answered (0: the connection failed)
    if_none_match: str | None
    live_status: str  # what the page showed when the call was made
    rows: list[int]  # the request ids the page showed when the call was made


@dataclass
class Gateway:
    """The admin API: `/api/events` answers `streams` in turn (then 200), the request log has ETags."""

    clock: FakeClock
    streams: list[int] = field(default_factory=list)
    rows: list[int] = field(default_factory=lambda: [1])
    gpus: list[dict[str, Any]] = field(default_factory=list)
    down: bool = False  # connections are refused
    signed_out: bool = False  # every call answers 401
    read_error: bool = False  # the request log's connection is reset mid-answer
    scheduled: list[tuple[float, Callable[[], None]]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    open_streams: list[asyncio.Queue] = field(default_factory=list)
    page: Any = None
    start: float = 0.0

    def __post_init__(self) -> None:
        self.start = self.clock.now

    def at(self, seconds: float, change: Callable[[], None]) -> None:
        """Make `change` to the server's data `seconds` (fake) after the start."""
        self.scheduled.append((self.start + seconds, change))

    def client(self, _state: Any) -> AdminClient:
        return AdminClient("http://switchyard.test", transport=httpx.MockTransport(self.handle))

    def etag(self) -> str:
        return f'"v{max(self.rows)}-{len(self.rows)}"'

    def calls_to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    def drop(self) -> None:
        """The connections of the open event streams are lost."""
        for queue in self.open_streams:
            queue.put_nowait(DROP)

    def close_streams(self) -> None:
        """The server ends the open event streams (a restart, say)."""
        for queue in self.open_streams:
            queue.put_nowait(CLOSE)

    def push(self, event_type: str) -> None:
        for queue in self.open_streams:
            queue.put_nowait(b"event: " + event_type.encode() + b"\ndata: {}\n\n")

    async def handle(self, request: httpx.Request) -> httpx.Response:
        for when, change in list(self.scheduled):
            if when <= self.clock.now:
                change()
                self.scheduled.remove((when, change))
        response = self._answer(request)
        page = self.page
        self.calls.append(
            Call(
                at=self.clock.now - self.start,
                path=request.url.path,
                status=0 if isinstance(response, Exception) else response.status_code,
                if_none_match=request.headers.get("if-none-match"),
                live_status=page.live_status if page is not None else "",
                rows=[v.id for v in getattr(page, "rows", getattr(page, "recent", []))],
            )
        )
        if isinstance(response, Exception):
            raise response
        return response

    def _answer(self, request: httpx.Request) -> httpx.Response | Exception:
        path = request.url.path
        if self.down:
            return httpx.ConnectError("connection refused", request=request)
        if self.signed_out:
            return httpx.Response(401, json={"status_code": 401, "detail": "not signed in"})
        if path == "/api/events":
            status = self.streams.pop(0) if self.streams else 200
            if status != 200:
                return httpx.Response(status, json={"status_code": status, "detail": "no event stream"})
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=self._stream(asyncio.Queue())
            )
        if path == "/api/requests":
            if self.read_error:
                return httpx.ReadError("connection reset by peer", request=request)
            etag = self.etag()
            if request.headers.get("if-none-match") == etag:
                return httpx.Response(304, headers={"ETag": etag})
            items = [row(i) for i in sorted(self.rows, reverse=True)]
            return httpx.Response(200, json={"items": items, "next_cursor": None}, headers={"ETag": etag})
        if path == "/api/requests/histogram":
            since = NOW - timedelta(hours=24)
            n = len(self.rows)
            bucket = {"start": since.isoformat(), "count": n, "errors": 0, "prompt_tokens": 5 * n}
            body = {"since": since.isoformat(), "until": NOW.isoformat(), "bucket_seconds": 1800.0, "buckets": [bucket]}
            return httpx.Response(200, json=body)
        if path == "/api/models":
            return httpx.Response(200, json={"models": []})
        if path == "/api/keys":
            return httpx.Response(200, json=[])
        if path == "/api/system":
            return httpx.Response(200, json={"status": "ok", "versions": {"switchyard": "1.0"}, "upstreams": []})
        if path == "/api/gpu":
            return httpx.Response(200, json={"gpus": self.gpus, "sampled_at": 1.0, "readers": ["nvml"]})
        return httpx.Response(404, json={"status_code": 404, "detail": "Not Found"})

    async def _stream(self, queue: asyncio.Queue) -> AsyncIterator[bytes]:
        self.open_streams.append(queue)
        try:
            yield b'event: models\ndata: {"models": []}\n\n'  # what the server sends first
            while True:
                item = await queue.get()
                if item is DROP:
                    raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")
                if item is CLOSE:
                    return
                yield item
        finally:
            self.open_streams.remove(queue)


@dataclass
class Page:
    state: Any
    follower: asyncio.Task
    chained: Any  # what the page's on_load returned


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(live, "time", fake)
    monkeypatch.setattr(live, "asyncio", FakeAsyncio(fake))
    return fake


@pytest.fixture
def gateway(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Gateway:
    server = Gateway(clock)
    for module in (live, requests_page, dashboard_page):
        monkeypatch.setattr(module, "admin_api", server.client)
    return server


@contextlib.asynccontextmanager
async def open_page(page_cls: type, gateway: Gateway, path: str) -> AsyncIterator[Page]:
    """Open `path` in a tab: run the page's on_load, then the follower it chains, as a background task."""
    token = f"tab-{next(_tabs)}"
    manager = StateManagerMemory()

    async def enqueue(*_: Any) -> None:
        return None

    with EventContext(token=token, state_manager=manager, enqueue_impl=enqueue):
        root = await manager.get_state(BaseStateToken(ident=token, cls=State))
        root.is_hydrated = True
        root.router = RouterData.from_router_data({"pathname": path, "asPath": path, "headers": {}})
        state = await root.get_state(page_cls)
        gateway.page = state
        chained = await page_cls.load.fn(state)
        follower = asyncio.create_task(page_cls.follow_live.fn(StateProxy(state)))
        try:
            yield Page(state, follower, chained)
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(follower, 5)
    await manager.close()


async def until(condition: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await REAL_SLEEP(0)


async def settle() -> None:
    """Let every task run until it waits on something only the test can give."""
    for _ in range(1000):
        await REAL_SLEEP(0)


def is_live(page: Page, gateway: Gateway) -> Callable[[], bool]:
    """Live, with the catch-up refresh that follows every (re)connection started."""

    def check() -> bool:
        connected = [c.at for c in gateway.calls_to("/api/events") if c.status == 200]
        caught_up = bool(connected) and any(c.at > connected[-1] for c in gateway.calls_to("/api/requests"))
        return page.state.live_status == "live" and bool(gateway.open_streams) and caught_up

    return check


async def until_live(page: Page, gateway: Gateway, what: str) -> None:
    """Live and quiet: the catch-up refresh after connecting (and its settle retries) is over."""
    await until(is_live(page, gateway), what)
    await settle()


def redirect_target(spec: Any) -> str:
    return {str(name): value._var_value for name, value in spec.args}["path"]


# --------------------------------------------------------------------------- the fallback to polling


async def test_a_page_polls_every_five_seconds_while_the_stream_cannot_be_opened_then_goes_live(gateway: Gateway):
    gateway.streams = [503]
    async with open_page(RequestsState, gateway, "/requests") as page:
        assert page.chained is RequestsState.follow_live  # on_load starts the follower
        await until_live(page, gateway, "live after the second try")

        assert [c.at for c in gateway.calls_to("/api/events")] == approx([0.0, 10.0])
        polls = [c for c in gateway.calls_to("/api/requests")[1:] if c.at <= 10.0]  # [0] is on_load's
        assert [c.at for c in polls] == approx([0.0, 5.0, 10.0])
        assert [c.live_status for c in polls] == ["connecting", "polling", "polling"]
        assert gateway.calls_to("/api/events")[-1].live_status == "polling"  # shown until the stream is back

        calls = len(gateway.calls)
        await settle()
        assert len(gateway.calls) == calls  # no more polling while the stream is open
        assert page.state.live_status == "live"


async def test_a_dropped_stream_falls_back_to_polling_and_reconnects(gateway: Gateway, clock: FakeClock):
    async with open_page(RequestsState, gateway, "/requests") as page:
        await until_live(page, gateway, "live")
        gateway.rows.append(2)
        gateway.push("request.completed")
        await until(lambda: [r.id for r in page.state.rows] == [2, 1], "the new request shown")

        dropped_at = clock.now - gateway.start
        before = len(gateway.calls_to("/api/requests"))
        gateway.drop()
        await until(lambda: page.state.live_status == "polling", "polling after the drop")
        await until_live(page, gateway, "live again")

        assert [c.at - dropped_at for c in gateway.calls_to("/api/events")[1:]] == approx([10.0])
        reconnected = gateway.calls_to("/api/events")[-1].at
        polls = [c.at - dropped_at for c in gateway.calls_to("/api/requests")[before:] if c.at <= reconnected]
        assert polls == approx([0.0, 5.0, 10.0])
        calls = len(gateway.calls)
        await settle()
        assert len(gateway.calls) == calls
        assert [r.id for r in page.state.rows] == [2, 1]


async def test_a_stream_the_server_ends_is_reopened_after_a_second(gateway: Gateway, clock: FakeClock):
    async with open_page(RequestsState, gateway, "/requests") as page:
        await until_live(page, gateway, "live")
        closed_at = clock.now - gateway.start
        before = len(gateway.calls_to("/api/requests"))
        gateway.close_streams()
        await until(lambda: len(gateway.calls_to("/api/events")) == 2, "reconnected")
        await until_live(page, gateway, "live again")

        assert gateway.calls_to("/api/events")[1].at - closed_at == approx(1.0)
        assert [c.at - closed_at for c in gateway.calls_to("/api/requests")[before:]][:2] == approx([0.0, 1.0])


async def test_a_server_without_an_event_stream_is_polled_and_asked_again_after_30_seconds(gateway: Gateway):
    gateway.streams = [404]
    async with open_page(RequestsState, gateway, "/requests") as page:
        await until_live(page, gateway, "live once the server has a stream")

        assert [c.at for c in gateway.calls_to("/api/events")] == approx([0.0, 30.0])
        polls = [c.at for c in gateway.calls_to("/api/requests")[1:] if c.at <= 30.0]
        assert polls == approx([0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0])


async def test_polling_asks_with_the_etag_and_an_unchanged_answer_keeps_the_rows(gateway: Gateway):
    gateway.streams = [503]
    gateway.at(7.0, lambda: gateway.rows.append(2))  # a request completes between the second and third poll
    async with open_page(RequestsState, gateway, "/requests") as page:
        await until_live(page, gateway, "live")

        load, *polls = gateway.calls_to("/api/requests")[:5]
        assert (load.if_none_match, load.status) == (None, 200)  # on_load asks for everything
        first_etag = '"v1-1"'
        assert [c.at for c in polls] == approx([0.0, 5.0, 10.0, 10.2])  # the last: the catch-up once live
        assert [(c.if_none_match, c.status) for c in polls] == [
            (first_etag, 304),
            (first_etag, 304),
            (first_etag, 200),  # the new row
            ('"v2-2"', 304),  # with the new ETag
        ]
        assert [c.rows for c in polls] == [[1], [1], [1], [2, 1]]  # a 304 leaves the rows on screen
        assert [r.id for r in page.state.rows] == [2, 1]
        histograms = [c.at for c in gateway.calls_to("/api/requests/histogram")]
        assert histograms == approx([load.at, 10.0])  # re-read only when the list changed


async def test_a_page_says_offline_while_the_api_is_unreachable_and_polling_once_it_answers(gateway: Gateway):
    async with open_page(RequestsState, gateway, "/requests") as page:
        await until_live(page, gateway, "live")
        gateway.down = True
        gateway.at(gateway.calls[-1].at + 7.0, lambda: setattr(gateway, "down", False))
        down_at = gateway.calls[-1].at
        before = len(gateway.calls_to("/api/requests"))
        gateway.drop()
        await until(lambda: page.state.live_status == "offline", "offline")
        assert [r.id for r in page.state.rows] == [1]  # what was loaded stays on screen
        await until_live(page, gateway, "live again")

        polls = gateway.calls_to("/api/requests")[before:]
        assert [c.at - down_at for c in polls[:3]] == approx([0.0, 5.0, 10.0])
        assert [c.status for c in polls[:3]] == [0, 0, 304]
        assert [c.live_status for c in polls[:3]] == ["live", "offline", "offline"]
        assert [c.rows for c in polls[:3]] == [[1], [1], [1]]
        assert gateway.calls_to("/api/events")[-1].live_status == "polling"  # answered again: polling


@pytest.mark.parametrize("when", ["opening the stream", "polling"])
async def test_a_page_whose_session_ended_goes_to_sign_in_and_back(gateway: Gateway, when: str):
    if when == "polling":
        gateway.streams = [503]
        gateway.at(7.0, lambda: setattr(gateway, "signed_out", True))
    async with open_page(RequestsState, gateway, "/requests") as page:
        if when == "opening the stream":
            gateway.signed_out = True  # after on_load, before the follower's first step
        result = await asyncio.wait_for(page.follower, 5)  # the follower ends

        assert redirect_target(result) == "/login?next=/requests"
        assert page.state.live_status == "offline"
        assert gateway.calls[-1].status == 401
        assert gateway.calls[-1].path == ("/api/events" if when == "opening the stream" else "/api/requests")


async def test_a_connection_reset_while_polling_shows_offline_and_keeps_polling(gateway: Gateway):
    gateway.streams = [503]
    gateway.at(7.0, lambda: setattr(gateway, "read_error", False))
    async with open_page(RequestsState, gateway, "/requests") as page:
        gateway.read_error = True  # after on_load, before the follower
        await until(lambda: page.follower.done() or is_live(page, gateway)(), "live again, or the follower ended")

        assert not page.follower.done()
        polls = gateway.calls_to("/api/requests")[1:4]
        assert [c.at for c in polls] == approx([0.0, 5.0, 10.0])
        assert [c.status for c in polls] == [0, 0, 304]
        assert polls[1].live_status == "offline"


async def test_the_dashboard_keeps_its_requests_on_an_unchanged_answer_and_updates_gpu_cards_while_polling(
    gateway: Gateway,
):
    gateway.streams = [503] * 10  # the stream stays down
    gateway.gpus = [gpu(0, "NVIDIA H100", "nvidia", 10 * GIB, 80 * GIB, utilization_percent=5.0)]
    gateway.at(3.0, lambda: gateway.gpus[0].update(memory_used_bytes=60 * GIB, utilization_percent=97.0))
    async with open_page(DashboardState, gateway, "/") as page:
        loaded_tiles = list(page.state.tiles)
        assert [(t.key, t.value) for t in loaded_tiles][:1] == [("requests", "1")]
        assert [g.memory for g in page.state.gpus] == ["10.0 GB / 80.0 GB"]
        assert page.chained is DashboardState.follow_live
        await until(lambda: len(gateway.calls_to("/api/gpu")) >= 3, "polled twice")

        assert page.state.live_status == "polling"
        polls = gateway.calls_to("/api/requests")[1:3]
        assert [c.at for c in polls] == approx([0.0, 5.0])
        assert [(c.if_none_match, c.status) for c in polls] == [(gateway.etag(), 304)] * 2
        assert [v.id for v in page.state.recent] == [1]
        assert page.state.tiles == loaded_tiles
        assert [(g.memory, g.memory_percent, g.utilization) for g in page.state.gpus] == [
            ("60.0 GB / 80.0 GB", 75, "97%")
        ]
        assert page.state.load_error == ""


# --------------------------------------------------------------------------- GPU cards


async def gpus_from_api(entries: list[dict[str, Any]]) -> list[GpuInfo]:
    """`GET /api/gpu` through the dashboard's client, answered the way the server answers."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/gpu"
        body = {"gpus": entries, "sampled_at": 1767225600.0, "readers": ["nvml", "amdsmi"]}
        return httpx.Response(200, content=json.dumps(body), headers={"content-type": "application/json"})

    async with AdminClient("http://switchyard.test", transport=httpx.MockTransport(handler)) as api:
        return await api.gpus()


async def test_gpu_cards_show_memory_utilisation_temperature_and_power_of_every_gpu_in_order():
    views = gpu_views(
        await gpus_from_api([
            gpu(0, "NVIDIA H200", "nvidia", 20 * GIB, 80 * GIB, utilization_percent=87.0, temperature_c=64.0,
                power_watts=312.456, uuid="GPU-1", bus_id="00000000:17:00.0"),
            gpu(1, "NVIDIA H200", "nvidia", 3 * GIB // 2, 80 * GIB, utilization_percent=0.0, temperature_c=31.0,
                power_watts=71.6),
        ])
    )  # fmt: skip
    assert views == [
        GpuView("0: NVIDIA H200", "20.0 GB / 80.0 GB", 25, "87%", "64 °C", "312 W"),
        GpuView("1: NVIDIA H200", "1.5 GB / 80.0 GB", 2, "0%", "31 °C", "72 W"),
    ]


async def test_an_apple_silicon_gpu_without_temperature_or_power_shows_dashes_for_them():
    views = gpu_views(
        await gpus_from_api([
            gpu(0, "Apple M2 Max", "apple", 48 * GIB, 96 * GIB, utilization_percent=37.0, unified_memory=True,
                core_count=38),
        ])
    )  # fmt: skip
    assert views == [GpuView("0: Apple M2 Max", "48.0 GB / 96.0 GB", 50, "37%", "—", "—")]


async def test_an_amd_apu_and_a_card_whose_driver_reads_nothing_but_memory():
    views = gpu_views(
        await gpus_from_api([
            gpu(0, "AMD Radeon 890M", "amd", 7 * GIB, 62 * GIB, temperature_c=48.0, unified_memory=True),
            gpu(0, "NVIDIA GeForce RTX 4090", "nvidia", 512 * 1024**2, 24 * GIB),
        ])
    )  # fmt: skip
    assert views == [
        GpuView("0: AMD Radeon 890M", "7.0 GB / 62.0 GB", 11, "—", "48 °C", "—"),
        GpuView("0: NVIDIA GeForce RTX 4090", "512.0 MB / 24.0 GB", 2, "—", "—", "—"),
    ]


async def test_memory_percentages_round_and_a_sample_without_totals_shows_zero():
    views = gpu_views(
        await gpus_from_api(
            [
                gpu(0, "full", "nvidia", 80 * GIB - 1, 80 * GIB),
                gpu(1, "idle", "nvidia", 0, 80 * GIB),
                gpu(2, "unknown", "amd", 0, 0),
            ]
        )
    )
    assert [(v.memory_percent, v.memory) for v in views] == [
        (100, "80.0 GB / 80.0 GB"),
        (0, "0 B / 80.0 GB"),
        (0, "0 B / 0 B"),
    ]


async def test_no_gpus_gives_no_cards():
    assert gpu_views(await gpus_from_api([])) == []
