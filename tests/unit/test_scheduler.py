"""FifoScheduler: collation, priorities, the starvation bound and limits — with no processes and no sleeping.

A fake effects object plays the engine: it records swaps, grants and failures,
and the tests decide when a swap finishes by calling :func:`finish`.
"""

from __future__ import annotations

import pytest

from core.config.schema import GroupConfig
from core.swap.policy import GroupPolicy
from core.swap.scheduler import (
    ConcurrencyLimitError,
    FifoScheduler,
    ModelUnloadedError,
    Ticket,
    UnknownModelError,
)
from core.upstream.process import ProcessState

RUNNING = (ProcessState.READY, ProcessState.STARTING)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeEffects:
    def __init__(self, models: list[str], ready: tuple[str, ...] = ()):
        self.states = {m: (ProcessState.READY if m in ready else ProcessState.STOPPED) for m in models}
        self.swaps: list[tuple[str, list[str]]] = []
        self.granted: list[Ticket] = []
        self.failed: list[tuple[Ticket, Exception]] = []
        self.stopped: list[tuple[list[str], str]] = []
        self.gone: set[int] = set()  # tickets whose caller walked away before the grant

    def model_state(self, model_id: str) -> ProcessState | None:
        return self.states.get(model_id)

    def running_models(self) -> list[str]:
        return [m for m, s in self.states.items() if s in RUNNING]

    def start_swap(self, model_id: str, evict: list[str]) -> None:
        self.swaps.append((model_id, list(evict)))
        for m in evict:
            self.states[m] = ProcessState.STOPPING
        self.states[model_id] = ProcessState.STARTING

    def grant(self, ticket: Ticket) -> bool:
        if ticket.id in self.gone:
            return False
        self.granted.append(ticket)
        return True

    def fail(self, ticket: Ticket, error: Exception) -> None:
        self.failed.append((ticket, error))

    def stop_models(self, model_ids: list[str], reason: str) -> None:
        self.stopped.append((list(model_ids), reason))
        for m in model_ids:
            self.states[m] = ProcessState.STOPPED

    # views for assertions
    @property
    def served(self) -> list[str]:
        return [t.model for t in self.granted]

    @property
    def evicting_swaps(self) -> int:
        return sum(1 for _, evict in self.swaps if evict)


def one_at_a_time(*models: str) -> GroupPolicy:
    return GroupPolicy({"all": GroupConfig(id="all", members=models, swap=True, exclusive=True)})


def make(models: list[str], *, ready=(), policy=None, **kwargs):
    effects = FakeEffects(models, ready)
    clock = Clock()
    scheduler = FifoScheduler(
        policy or one_at_a_time(*models), effects, limits=kwargs.pop("limits", {}), clock=clock, **kwargs
    )
    return scheduler, effects, clock


def request(scheduler: FifoScheduler, clock: Clock, model: str) -> Ticket:
    ticket = Ticket(model=model, arrived=clock())
    scheduler.on_request(ticket)
    return ticket


def finish(scheduler: FifoScheduler, effects: FakeEffects, model: str, error: Exception | None = None) -> None:
    """The engine's swap task for `model` ends: its evictions are stopped, it is ready (or failed)."""
    (_, evict) = next(s for s in reversed(effects.swaps) if s[0] == model)
    for m in evict:
        effects.states[m] = ProcessState.STOPPED
    effects.states[model] = ProcessState.FAILED if error else ProcessState.READY
    scheduler.on_swap_done(model, error)


def serve_all(scheduler: FifoScheduler, effects: FakeEffects, model: str) -> None:
    """Every granted request for `model` that is still open completes."""
    for ticket in [t for t in effects.granted if t.model == model and not getattr(t, "done", False)]:
        ticket.done = True  # type: ignore[attr-defined]
        scheduler.on_serve_done(model)


class TestCollation:
    def test_abcabc_submitted_together_is_served_aabbcc_with_two_swaps(self):
        scheduler, effects, clock = make(["A", "B", "C"])
        for model in "ABCABC":
            request(scheduler, clock, model)
        for model in "ABC":
            finish(scheduler, effects, model)
            serve_all(scheduler, effects, model)
        assert effects.served == ["A", "A", "B", "B", "C", "C"]
        assert [target for target, _ in effects.swaps] == ["A", "B", "C"]
        assert effects.evicting_swaps == 2
        assert effects.swaps[1:] == [("B", ["A"]), ("C", ["B"])]

    def test_requests_for_a_loading_model_join_its_swap(self):
        scheduler, effects, clock = make(["A"])
        request(scheduler, clock, "A")
        request(scheduler, clock, "A")
        assert effects.swaps == [("A", [])] and effects.served == []
        finish(scheduler, effects, "A")
        assert effects.served == ["A", "A"]

    def test_a_ready_model_is_served_at_once(self):
        scheduler, effects, clock = make(["A", "B"], ready=("A",))
        request(scheduler, clock, "A")
        assert effects.served == ["A"] and effects.swaps == []

    def test_a_busy_model_is_not_evicted_until_its_requests_finish(self):
        scheduler, effects, clock = make(["A", "B"], ready=("A",))
        request(scheduler, clock, "A")
        request(scheduler, clock, "A")
        request(scheduler, clock, "B")
        scheduler.on_serve_done("A")
        assert effects.swaps == []
        scheduler.on_serve_done("A")
        assert effects.swaps == [("B", ["A"])]

    def test_swaps_that_evict_nothing_in_common_run_in_parallel(self):
        independent = GroupPolicy(
            {
                "one": GroupConfig(id="one", members=("A",), exclusive=False),
                "two": GroupConfig(id="two", members=("B",), exclusive=False),
            }
        )
        scheduler, effects, clock = make(["A", "B"], policy=independent)
        request(scheduler, clock, "A")
        request(scheduler, clock, "B")
        assert effects.swaps == [("A", []), ("B", [])]


class TestPriority:
    def test_queued_requests_are_ordered_by_priority_then_arrival(self):
        scheduler, _, clock = make(["Z", "A", "B", "C", "D"], priority={"A": 10, "B": 5, "C": 5, "D": 1})
        request(scheduler, clock, "Z")  # loading Z keeps everyone else queued
        for model in "BDCA":
            request(scheduler, clock, model)
        assert [t.model for t in scheduler.queued] == ["A", "B", "C", "D"]

    def test_the_higher_priority_model_is_swapped_in_first(self):
        scheduler, effects, clock = make(["Z", "low", "high"], priority={"high": 1})
        request(scheduler, clock, "Z")
        request(scheduler, clock, "low")
        request(scheduler, clock, "high")
        finish(scheduler, effects, "Z")
        serve_all(scheduler, effects, "Z")
        assert effects.swaps[-1] == ("high", ["Z"])
        finish(scheduler, effects, "high")
        serve_all(scheduler, effects, "high")
        assert effects.swaps[-1] == ("low", ["high"])
        finish(scheduler, effects, "low")
        assert effects.served == ["Z", "high", "low"]


class TestStarvationBound:
    def test_a_stream_of_requests_for_a_ready_model_cannot_starve_a_waiting_one(self):
        scheduler, effects, clock = make(["A", "B"], ready=("A",), starvation_bound=10.0)
        request(scheduler, clock, "A")  # in flight
        request(scheduler, clock, "B")  # must evict busy A: waits
        clock.advance(5)
        request(scheduler, clock, "A")  # within the bound: collated, served at once
        scheduler.on_serve_done("A")
        assert effects.served == ["A", "A"]
        clock.advance(6)  # B has now waited 11 s
        late = request(scheduler, clock, "A")
        assert effects.served == ["A", "A"], "past the bound, A's new request must wait behind B"
        scheduler.on_serve_done("A")  # A drains
        assert effects.swaps == [("B", ["A"])]
        finish(scheduler, effects, "B")
        assert effects.served[-1] == "B"
        serve_all(scheduler, effects, "B")
        assert effects.swaps[-1] == ("A", ["B"])
        finish(scheduler, effects, "A")
        assert effects.granted[-1] is late

    def test_high_priority_traffic_cannot_starve_a_low_priority_model_forever(self):
        scheduler, effects, clock = make(["A", "B"], ready=("A",), priority={"A": 10}, starvation_bound=10.0)
        request(scheduler, clock, "A")
        request(scheduler, clock, "B")
        clock.advance(11)
        request(scheduler, clock, "A")  # held, but queued ahead of B by priority
        scheduler.on_serve_done("A")
        assert effects.swaps == [("B", ["A"])], "the held A request must not be granted ahead of starving B"

    def test_within_the_bound_collation_wins(self):
        scheduler, effects, clock = make(["A", "B"], ready=("A",), starvation_bound=10.0)
        request(scheduler, clock, "A")
        request(scheduler, clock, "B")
        for _ in range(5):
            clock.advance(1.5)
            request(scheduler, clock, "A")
        assert effects.served == ["A"] * 6 and effects.swaps == []

    def test_a_tick_after_the_bound_holds_back_requests_already_queued(self):
        scheduler, effects, clock = make(["A", "B", "C"], ready=("A",), starvation_bound=10.0)
        request(scheduler, clock, "A")
        request(scheduler, clock, "B")  # waits for A
        clock.advance(11)
        scheduler.on_tick()
        request(scheduler, clock, "A")  # held: B is starving and B would evict A
        assert effects.served == ["A"]
        scheduler.on_serve_done("A")
        assert effects.swaps == [("B", ["A"])]


class TestLimitsAndCancellation:
    def test_requests_beyond_the_concurrency_limit_are_rejected(self):
        scheduler, effects, clock = make(["A"], ready=("A",), limits={"A": 2})
        request(scheduler, clock, "A")
        request(scheduler, clock, "A")
        third = request(scheduler, clock, "A")
        ((ticket, error),) = effects.failed
        assert ticket is third and isinstance(error, ConcurrencyLimitError) and error.limit == 2
        scheduler.on_serve_done("A")
        request(scheduler, clock, "A")
        assert len(effects.served) == 3

    def test_waiting_requests_count_against_the_limit(self):
        scheduler, effects, clock = make(["A", "B"], limits={"B": 1})
        request(scheduler, clock, "A")
        request(scheduler, clock, "B")  # queued behind A's load
        request(scheduler, clock, "B")
        assert [type(e) for _, e in effects.failed] == [ConcurrencyLimitError]

    def test_the_default_limit_applies_to_models_without_one(self):
        scheduler, effects, clock = make(["A"], ready=("A",), default_limit=3)
        for _ in range(4):
            request(scheduler, clock, "A")
        assert len(effects.served) == 3 and len(effects.failed) == 1

    def test_cancelling_a_queued_request_frees_its_reservation_and_its_swap(self):
        scheduler, effects, clock = make(["A", "B"], limits={"B": 1})
        request(scheduler, clock, "A")
        queued = request(scheduler, clock, "B")
        scheduler.on_cancel(queued)
        assert scheduler.queued == []
        replacement = request(scheduler, clock, "B")
        assert effects.failed == [] and scheduler.queued == [replacement]
        scheduler.on_cancel(replacement)
        finish(scheduler, effects, "A")
        serve_all(scheduler, effects, "A")
        assert [target for target, _ in effects.swaps] == ["A"], "no swap for a request nobody waits for"

    def test_cancelling_a_swap_waiter_frees_its_reservation(self):
        scheduler, effects, clock = make(["A"], limits={"A": 1})
        waiter = request(scheduler, clock, "A")
        scheduler.on_cancel(waiter)
        request(scheduler, clock, "A")
        finish(scheduler, effects, "A")
        assert effects.failed == [] and effects.served == ["A"]

    def test_a_caller_gone_before_the_grant_does_not_hold_the_model(self):
        scheduler, effects, clock = make(["A", "B"])
        ghost = request(scheduler, clock, "A")
        effects.gone.add(ghost.id)
        request(scheduler, clock, "B")
        finish(scheduler, effects, "A")
        assert scheduler.in_flight == {}
        assert effects.swaps[-1] == ("B", ["A"])


class TestFailures:
    def test_unknown_models_are_rejected(self):
        scheduler, effects, clock = make(["A"])
        request(scheduler, clock, "nope")
        ((_, error),) = effects.failed
        assert isinstance(error, UnknownModelError)

    def test_a_failed_swap_fails_every_waiter_and_frees_their_reservations(self):
        scheduler, effects, clock = make(["A"], limits={"A": 2})
        first = request(scheduler, clock, "A")
        second = request(scheduler, clock, "A")
        boom = RuntimeError("exit status 1")
        finish(scheduler, effects, "A", error=boom)
        assert effects.failed == [(first, boom), (second, boom)]
        assert scheduler.reserved == {}
        request(scheduler, clock, "A")  # a later request retries the start
        assert effects.swaps[-1] == ("A", [])

    def test_a_failed_swap_lets_the_queue_move_on(self):
        scheduler, effects, clock = make(["A", "B"])
        request(scheduler, clock, "A")
        request(scheduler, clock, "B")
        finish(scheduler, effects, "A", error=RuntimeError("crashed"))
        assert effects.swaps[-1][0] == "B"

    def test_unload_fails_waiters_and_stops_the_model(self):
        scheduler, effects, clock = make(["A", "B"])
        loading = request(scheduler, clock, "A")
        queued = request(scheduler, clock, "B")
        scheduler.on_unload(["A", "B"])
        failed = {t.id: e for t, e in effects.failed}
        assert set(failed) == {loading.id, queued.id}
        assert all(isinstance(e, ModelUnloadedError) for e in failed.values())
        assert effects.stopped == [(["A", "B"], "unload")]
        assert scheduler.reserved == {} and scheduler.queued == [] and scheduler.active == {}

    def test_unloading_one_model_keeps_requests_for_others(self):
        scheduler, effects, clock = make(["A", "B"])
        request(scheduler, clock, "A")
        kept = request(scheduler, clock, "B")
        scheduler.on_unload(["A"])
        assert effects.swaps[-1] == ("B", [])
        assert kept not in [t for t, _ in effects.failed]

    def test_shutdown_fails_everyone_waiting(self):
        scheduler, effects, clock = make(["A", "B"])
        request(scheduler, clock, "A")
        request(scheduler, clock, "B")
        bye = RuntimeError("shutting down")
        scheduler.on_shutdown(bye)
        assert [e for _, e in effects.failed] == [bye, bye]


@pytest.mark.parametrize("order", ["ABAB", "AABB", "BABA"])
def test_two_models_never_need_more_than_one_eviction(order):
    scheduler, effects, clock = make(["A", "B"])
    for model in order:
        request(scheduler, clock, model)
    first = order[0]
    second = "B" if first == "A" else "A"
    for model in (first, second):
        finish(scheduler, effects, model)
        serve_all(scheduler, effects, model)
    assert effects.evicting_swaps == 1 and len(effects.served) == 4
