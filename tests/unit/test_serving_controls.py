"""Serving controls in the scheduler: per-model slot limits with a bounded FIFO queue, and the max-loaded cap
with LRU eviction by origin — with no processes and no sleeping (the fake effects of test_scheduler)."""

from __future__ import annotations

import pytest

from core.config.schema import GroupConfig, ModelConfig
from core.swap.capacity import CapacityError, LoadedModelCap, is_embedding_model
from core.swap.policy import GroupPolicy
from core.swap.scheduler import ConcurrencyLimitError, ModelUnloadedError, QueueFullError, SlotLimit, Ticket
from core.upstream.process import ProcessState
from tests.unit.test_scheduler import Clock, finish, make, request


def independent(*models: str) -> GroupPolicy:
    """Every model in its own non-exclusive group: nothing evicts anything (only the cap will)."""
    return GroupPolicy({m: GroupConfig(id=m, members=(m,), swap=False, exclusive=False) for m in models})


def ask(scheduler, clock: Clock, model: str, origin: str = "api") -> Ticket:
    ticket = Ticket(model=model, arrived=clock(), origin=origin)
    scheduler.on_request(ticket)
    return ticket


class TestSlotLimits:
    def test_requests_beyond_max_concurrent_wait_in_arrival_order(self):
        scheduler, effects, clock = make(["A"], ready=("A",))
        scheduler.set_slot_limits({"A": SlotLimit(max_concurrent=2, queue_depth=5)})
        tickets = [request(scheduler, clock, "A") for _ in range(5)]
        assert effects.granted == tickets[:2]
        assert scheduler.queued_for("A") == 3 and scheduler.in_flight == {"A": 2}
        scheduler.on_serve_done("A")
        assert effects.granted == tickets[:3]
        scheduler.on_serve_done("A")
        scheduler.on_serve_done("A")
        assert effects.granted == tickets and scheduler.queued_for("A") == 0

    def test_a_full_queue_answers_429_with_a_clear_message(self):
        scheduler, effects, clock = make(["A"], ready=("A",))
        scheduler.set_slot_limits({"A": SlotLimit(max_concurrent=1, queue_depth=1)})
        request(scheduler, clock, "A")
        request(scheduler, clock, "A")
        third = request(scheduler, clock, "A")
        ((ticket, error),) = effects.failed
        assert ticket is third and isinstance(error, QueueFullError)
        assert isinstance(error, ConcurrencyLimitError)  # the gateway answers both with 429
        assert "at most 1 request(s) at once and 1 more may wait" in str(error)
        scheduler.on_serve_done("A")  # a slot frees up: the queue has room again
        request(scheduler, clock, "A")
        assert len(effects.failed) == 1

    def test_queue_depth_zero_means_no_waiting(self):
        scheduler, effects, clock = make(["A"], ready=("A",))
        scheduler.set_slot_limits({"A": SlotLimit(max_concurrent=1, queue_depth=0)})
        request(scheduler, clock, "A")
        request(scheduler, clock, "A")
        assert len(effects.granted) == 1 and isinstance(effects.failed[0][1], QueueFullError)

    def test_requests_joining_a_cold_start_are_granted_up_to_the_limit(self):
        scheduler, effects, clock = make(["A"])
        scheduler.set_slot_limits({"A": SlotLimit(max_concurrent=1)})
        first, second = request(scheduler, clock, "A"), request(scheduler, clock, "A")
        finish(scheduler, effects, "A")
        assert effects.granted == [first] and scheduler.queued_for("A") == 1
        scheduler.on_serve_done("A")
        assert effects.granted == [first, second]

    def test_concurrency_limit_keeps_its_llama_swap_meaning(self):
        scheduler, effects, clock = make(["A"], ready=("A",), limits={"A": 2})
        scheduler.set_slot_limits({"A": SlotLimit(max_concurrent=1)})  # no queue_depth: the limit bounds it
        request(scheduler, clock, "A")
        request(scheduler, clock, "A")
        request(scheduler, clock, "A")
        assert [type(e) for _, e in effects.failed] == [ConcurrencyLimitError]

    def test_raising_the_limit_lets_waiting_requests_in_at_once(self):
        scheduler, effects, clock = make(["A"], ready=("A",))
        scheduler.set_slot_limits({"A": SlotLimit(max_concurrent=1)})
        request(scheduler, clock, "A")
        request(scheduler, clock, "A")
        assert len(effects.granted) == 1
        scheduler.set_slot_limits({"A": SlotLimit(max_concurrent=3)})
        assert len(effects.granted) == 2

    def test_cancel_unload_and_shutdown_reach_slot_waiters(self):
        scheduler, effects, clock = make(["A"], ready=("A",))
        scheduler.set_slot_limits({"A": SlotLimit(max_concurrent=1)})
        request(scheduler, clock, "A")
        gone = request(scheduler, clock, "A")
        scheduler.on_cancel(gone)
        assert scheduler.queued_for("A") == 0 and scheduler.reserved == {"A": 1}
        waiting = request(scheduler, clock, "A")
        scheduler.on_unload(["A"])
        assert effects.failed[-1][0] is waiting and isinstance(effects.failed[-1][1], ModelUnloadedError)

    def test_a_waiter_whose_model_stopped_meanwhile_starts_it_again(self):
        scheduler, effects, clock = make(["A"], ready=("A",))
        scheduler.set_slot_limits({"A": SlotLimit(max_concurrent=1)})
        request(scheduler, clock, "A")
        waiting = request(scheduler, clock, "A")
        effects.states["A"] = ProcessState.FAILED  # crashed while serving
        scheduler.on_serve_done("A")
        assert effects.swaps == [("A", [])]
        finish(scheduler, effects, "A")
        assert effects.granted[-1] is waiting


def capped(models: list[str], max_loaded: int, *, ready=(), started_by=None, uncounted=(), last_used=None):
    started = dict(started_by or {})
    used = dict(last_used or {})
    policy = LoadedModelCap(
        independent(*models), max_loaded, last_used=used.get, started_by=started.get, uncounted=uncounted
    )
    scheduler, effects, clock = make(models, ready=ready, policy=policy)
    return scheduler, effects, clock, started, used


class TestLoadedModelCap:
    def test_below_the_cap_nothing_is_evicted(self):
        scheduler, effects, clock, *_ = capped(["A", "B"], 2, ready=("A",))
        ask(scheduler, clock, "B")
        assert effects.swaps == [("B", [])]

    def test_the_openai_api_never_evicts_and_fails_with_503_material(self):
        scheduler, effects, clock, *_ = capped(["A", "B"], 1, ready=("A",), started_by={"A": "api"})
        ticket = ask(scheduler, clock, "B", origin="api")
        ((failed, error),) = effects.failed
        assert failed is ticket and isinstance(error, CapacityError)
        assert "1 of at most 1 models are loaded (A)" in str(error) and "never evict" in str(error)
        assert effects.swaps == [] and scheduler.reserved == {}

    def test_ollama_evicts_the_least_recently_used_api_model(self):
        scheduler, effects, clock, *_ = capped(
            ["A", "B", "C"], 2, ready=("A", "B"), started_by={"A": "api", "B": "ollama"},
            last_used={"A": 50.0, "B": 10.0},
        )  # fmt: skip
        ask(scheduler, clock, "C", origin="ollama")
        assert effects.swaps == [("C", ["B"])]

    def test_ollama_may_not_evict_what_an_admin_loaded(self):
        scheduler, effects, clock, *_ = capped(
            ["A", "B", "C"], 2, ready=("A", "B"), started_by={"A": "admin", "B": "api"},
            last_used={"A": 1.0, "B": 99.0},
        )  # fmt: skip
        ask(scheduler, clock, "C", origin="ollama")
        assert effects.swaps == [("C", ["B"])], "the older admin model stays; the API one goes"
        scheduler2, effects2, clock2, *_ = capped(["A", "C"], 1, ready=("A",), started_by={"A": "admin"})
        ask(scheduler2, clock2, "C", origin="ollama")
        assert isinstance(effects2.failed[0][1], CapacityError)

    def test_admin_evicts_api_models_first_then_the_oldest_admin_model(self):
        scheduler, effects, clock, *_ = capped(
            ["A", "B", "C", "D"], 3, ready=("A", "B", "C"),
            started_by={"A": "admin", "B": "admin", "C": "api"}, last_used={"A": 5.0, "B": 1.0, "C": 9.0},
        )  # fmt: skip
        ask(scheduler, clock, "D", origin="admin")
        assert effects.swaps == [("D", ["C"])]
        scheduler2, effects2, clock2, *_ = capped(
            ["A", "B", "D"], 2, ready=("A", "B"), started_by={"A": "admin", "B": "admin"},
            last_used={"A": 5.0, "B": 1.0},
        )  # fmt: skip
        ask(scheduler2, clock2, "D", origin="admin")
        assert effects2.swaps == [("D", ["B"])]

    def test_embedding_models_neither_count_nor_get_evicted(self):
        scheduler, effects, clock, *_ = capped(
            ["emb", "A", "B"], 1, ready=("emb", "A"), started_by={"emb": "api", "A": "api"}, uncounted=("emb",),
            last_used={"emb": 0.0, "A": 5.0},
        )  # fmt: skip
        ask(scheduler, clock, "B", origin="ollama")
        assert effects.swaps == [("B", ["A"])]
        ask(scheduler, clock, "emb", origin="api")
        assert effects.served == ["emb"]

    def test_a_busy_victim_makes_the_request_wait_not_fail(self):
        scheduler, effects, clock, *_ = capped(["A", "B"], 1, ready=("A",), started_by={"A": "api"})
        ask(scheduler, clock, "A")  # in flight
        waiting = ask(scheduler, clock, "B", origin="ollama")
        assert effects.swaps == [] and scheduler.queued == [waiting]
        scheduler.on_serve_done("A")
        assert effects.swaps == [("B", ["A"])]

    def test_library_models_are_outside_the_wrapped_policy(self):
        one_at_a_time = GroupPolicy({"all": GroupConfig(id="all", members=("A", "B"))})
        policy = LoadedModelCap(one_at_a_time, 3, last_used=lambda m: None, started_by=lambda m: "api",
                                managed=("lib",))  # fmt: skip
        assert policy.evictions_for("B", ["A", "lib"], "api") == ["A"]  # the group swaps A out, lib stays
        assert policy.evictions_for("lib", ["A", "B"], "api") == []


@pytest.mark.parametrize(
    ("cmd", "metadata", "expected"),
    [
        ("llama-server -m x.gguf --embeddings --port 1", {}, True),
        ("llama-server -m x.gguf --embedding", {}, True),
        ("llama-server -m x.gguf -c 2048", {}, False),
        ("python my_embedder.py", {"embedding": True}, True),
    ],
)
def test_embedding_models_are_recognised(cmd, metadata, expected):
    assert is_embedding_model(ModelConfig(id="m", cmd=cmd, metadata=metadata)) is expected
