"""FIFO request scheduler with collation, priorities and a starvation bound.

The scheduler is a synchronous state machine. It is driven by events (a request
arrived, a swap finished, a request finished, an unload, shutdown) from exactly
one owner — :class:`core.swap.engine.SwapEngine`'s run task — and performs side
effects only through :class:`Effects`. That makes it testable with a fake
effects object and a controllable clock: no processes, no sockets, no sleeping.

Decision tree for a request for model M:

1. Unknown model → rejected.
2. Over M's concurrency limit (running + waiting) → rejected with 429; with a slot limit
   (``max_concurrent`` + ``queue_depth``, from a library preset), more than both together → 429 too.
3. A swap for M is in flight → wait for it (join).
4. M is ready and nothing has to stop for it → granted now (collation: requests
   for a ready or loading model are served before another swap starts),
   unless a request that M's requests would keep waiting has waited longer
   than the starvation bound.
5. M's swap would stop a model that is busy, or collides with another swap in
   flight → queued (priority first, then arrival order).
6. Otherwise start a swap (in parallel with others whose evictions don't overlap).

A policy that knows who asks (:class:`core.swap.capacity.LoadedModelCap`, the max-loaded cap) gets the
ticket's origin through ``evictions_for``; when it refuses (the cap is full and this caller may not evict)
the request fails with :class:`core.swap.capacity.CapacityError` instead of waiting.

Slot limits: a model with ``max_concurrent`` N serves at most N granted requests at once; further requests
wait for a slot in arrival order (they are "queued" for the model, and count against ``queue_depth``).
This is separate from llama-swap's ``concurrencyLimit``, which keeps its meaning: it rejects beyond the limit.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.swap.capacity import CapacityError
from core.swap.policy import EvictionPolicy
from core.upstream.process import ProcessState


class ConcurrencyLimitError(Exception):
    def __init__(self, model_id: str, limit: int):
        super().__init__(f"too many requests for model {model_id}: its concurrency limit is {limit}")
        self.model_id = model_id
        self.limit = limit


class QueueFullError(ConcurrencyLimitError):
    """A model serving its maximum of concurrent requests has a full waiting queue (answered 429)."""

    def __init__(self, model_id: str, max_concurrent: int, queue_depth: int):
        super().__init__(model_id, max_concurrent + queue_depth)
        message = (
            f"model {model_id} is busy: it serves at most {max_concurrent} request(s) at once and {queue_depth} "
            "more may wait; try again shortly"
        )
        self.args = (message,)
        self.max_concurrent = max_concurrent
        self.queue_depth = queue_depth


@dataclass(frozen=True, slots=True)
class SlotLimit:
    """How many requests a model serves at once (0: no limit) and how many may wait for a slot
    (None: only the concurrency limit bounds them)."""

    max_concurrent: int = 0
    queue_depth: int | None = None

    @property
    def limits_slots(self) -> bool:
        return self.max_concurrent > 0


class UnknownModelError(Exception):
    pass


class ModelUnloadedError(Exception):
    pass


class Effects(Protocol):
    def model_state(self, model_id: str) -> ProcessState | None: ...
    def running_models(self) -> Iterable[str]: ...
    def start_swap(self, model_id: str, evict: list[str]) -> None: ...
    def grant(self, ticket: Ticket) -> bool: ...
    def fail(self, ticket: Ticket, error: Exception) -> None: ...
    def stop_models(self, model_ids: list[str], reason: str) -> None: ...


_ticket_ids = itertools.count(1)


@dataclass(eq=False)
class Ticket:
    """One request waiting for (or holding) a model."""

    model: str
    arrived: float
    id: int = field(default_factory=lambda: next(_ticket_ids))
    granted: bool = False
    context: Any = None  # the engine's future, opaque here
    #: who asks: "api" (inference clients), "ollama" (the Ollama API) or "admin"; the max-loaded cap uses it
    origin: str = "api"


@dataclass
class _Swap:
    target: str
    evict: list[str]
    waiters: list[Ticket]


class FifoScheduler:
    def __init__(
        self,
        policy: EvictionPolicy,
        effects: Effects,
        *,
        limits: dict[str, int],
        priority: dict[str, int] | None = None,
        starvation_bound: float = 10.0,
        clock: Callable[[], float],
        default_limit: int = 10,
    ):
        self.policy = policy
        self.effects = effects
        self.limits = limits
        self.priority = priority or {}
        self.starvation_bound = starvation_bound
        self.clock = clock
        self.default_limit = default_limit
        self.queued: list[Ticket] = []
        self.active: dict[str, _Swap] = {}
        self.in_flight: dict[str, int] = {}
        self.reserved: dict[str, int] = {}
        self.slot_limits: dict[str, SlotLimit] = {}
        #: granted-to-be requests waiting for one of their model's `max_concurrent` slots, in arrival order
        self.slot_waiters: dict[str, list[Ticket]] = {}

    # ----------------------------------------------------------------- events

    def on_request(self, ticket: Ticket) -> None:
        state = self.effects.model_state(ticket.model)
        if state is None:
            self.effects.fail(ticket, UnknownModelError(f"model {ticket.model} is not managed by this scheduler"))
            return
        limit = self.limits.get(ticket.model, self.default_limit)
        reserved = self.reserved.get(ticket.model, 0)
        if reserved >= limit:
            self.effects.fail(ticket, ConcurrencyLimitError(ticket.model, limit))
            return
        slot = self.slot_limits.get(ticket.model)
        if (
            slot is not None
            and slot.limits_slots
            and slot.queue_depth is not None
            and reserved >= slot.max_concurrent + slot.queue_depth
        ):
            self.effects.fail(ticket, QueueFullError(ticket.model, slot.max_concurrent, slot.queue_depth))
            return
        self.reserved[ticket.model] = self.reserved.get(ticket.model, 0) + 1
        if self._try_place(ticket, state):
            return
        self._enqueue(ticket)

    def on_cancel(self, ticket: Ticket) -> None:
        """A waiting caller went away. (A granted ticket is released with on_serve_done.)"""
        if ticket.granted:
            return
        waiters = self.slot_waiters.get(ticket.model)
        if waiters and ticket in waiters:
            waiters.remove(ticket)
            self._release(ticket.model)
            return
        for swap in self.active.values():
            if ticket in swap.waiters:
                swap.waiters.remove(ticket)
                self._release(ticket.model)
                return
        if ticket in self.queued:
            self.queued.remove(ticket)
            self._release(ticket.model)

    def on_swap_done(self, model_id: str, error: Exception | None) -> None:
        swap = self.active.pop(model_id, None)
        if swap is None:
            self._drain()
            return
        for waiter in swap.waiters:
            if error is None:
                self._grant(waiter)
            else:
                self._fail(waiter, error)
        self._drain()

    def on_serve_done(self, model_id: str) -> None:
        self.in_flight[model_id] = self.in_flight.get(model_id, 0) - 1
        self._release(model_id)
        self._grant_waiting_slots(model_id)
        if self.in_flight.get(model_id, 0) <= 0:
            self.in_flight.pop(model_id, None)
            self._drain()

    def set_slot_limits(self, limits: dict[str, SlotLimit]) -> None:
        """Replace the per-model slot limits (live: a raised limit lets waiting requests in at once)."""
        self.slot_limits = {m: limit for m, limit in limits.items() if limit.limits_slots}
        for model_id in list(self.slot_waiters):
            self._grant_waiting_slots(model_id)

    def on_unload(self, targets: list[str], reason: str = "unload") -> None:
        targets = [t for t in targets if self.effects.model_state(t) is not None]
        target_set = set(targets)
        for model_id in target_set & self.active.keys():
            for waiter in self.active.pop(model_id).waiters:
                self._fail(waiter, ModelUnloadedError(f"model {model_id} was unloaded"))
        for model_id in target_set & self.slot_waiters.keys():
            for waiter in self.slot_waiters.pop(model_id):
                self._fail(waiter, ModelUnloadedError(f"model {model_id} was unloaded"))
        kept = []
        for ticket in self.queued:
            if ticket.model in target_set:
                self._fail(ticket, ModelUnloadedError(f"model {ticket.model} was unloaded"))
            else:
                kept.append(ticket)
        self.queued = kept
        if targets:
            self.effects.stop_models(targets, reason)
        self._drain()

    def on_shutdown(self, error: Exception) -> None:
        for swap in self.active.values():
            for waiter in swap.waiters:
                self._fail(waiter, error)
        self.active.clear()
        for ticket in self.queued:
            self._fail(ticket, error)
        self.queued = []
        for waiters in self.slot_waiters.values():
            for ticket in waiters:
                self._fail(ticket, error)
        self.slot_waiters.clear()

    def on_tick(self) -> None:
        """Time passed: a queued request may have crossed the starvation bound."""
        self._drain()

    # ------------------------------------------------------------- inspection

    def queued_for(self, model_id: str) -> int:
        waiting = sum(1 for t in self.queued if t.model == model_id)
        swap = self.active.get(model_id)
        return waiting + (len(swap.waiters) if swap else 0) + len(self.slot_waiters.get(model_id, ()))

    def is_busy(self, model_id: str) -> bool:
        return self.in_flight.get(model_id, 0) > 0 or model_id in self.active or self.queued_for(model_id) > 0

    # --------------------------------------------------------------- internals

    def _try_place(self, ticket: Ticket, state: ProcessState) -> bool:
        """Join, grant or start a swap for `ticket`; False means it must wait in the queue."""
        if ticket.model in self.active:
            self.active[ticket.model].waiters.append(ticket)
            return True
        running = self._running_set(exclude=ticket.model)
        try:
            evict = self._evictions(ticket.model, running, ticket.origin)
        except CapacityError as exc:
            self._fail(ticket, exc)
            return True  # answered: it must not wait
        if self._collides(ticket.model, evict):
            return False
        if state == ProcessState.READY and not evict:
            if self._held_for_starving(ticket.model):
                return False
            self._grant(ticket)
            return True
        if any(self.in_flight.get(m, 0) > 0 for m in evict):
            return False
        if self._held_for_starving(ticket.model, evict):
            return False
        self.active[ticket.model] = _Swap(ticket.model, evict, [ticket])
        self.effects.start_swap(ticket.model, evict)
        return True

    def _held_for_starving(self, model_id: str, evict: list[str] | None = None) -> bool:
        """True when serving `model_id` now would keep a starved queued request waiting longer."""
        now = self.clock()
        for waiting in self.queued:
            if waiting.model == model_id or now - waiting.arrived < self.starvation_bound:
                continue
            try:
                their_evict = self._evictions(waiting.model, self._running_set(exclude=waiting.model), waiting.origin)
            except CapacityError:
                continue
            if model_id in their_evict:
                return True
            if evict and waiting.model in evict:
                return True
        return False

    def _evictions(self, target: str, running: list[str], origin: str) -> list[str]:
        """The policy's evictions; a policy with ``evictions_for`` also learns who asks (and may refuse)."""
        evictions_for = getattr(self.policy, "evictions_for", None)
        if evictions_for is not None:
            return evictions_for(target, running, origin)
        return self.policy.evictions(target, running)

    def _collides(self, target: str, evict: list[str]) -> bool:
        for swap in self.active.values():
            if swap.target == target:
                continue
            if target in swap.evict or swap.target in evict or set(evict) & set(swap.evict):
                return True
        return False

    def _running_set(self, exclude: str) -> list[str]:
        out = set(self.effects.running_models())
        out.update(t for t in self.active if t != exclude)
        out.discard(exclude)
        return sorted(out)

    def _enqueue(self, ticket: Ticket) -> None:
        priority = self.priority.get(ticket.model, 0)
        index = len(self.queued)
        for i, queued in enumerate(self.queued):
            if self.priority.get(queued.model, 0) < priority:
                index = i
                break
        self.queued.insert(index, ticket)

    def _drain(self) -> None:
        # Each ticket is taken out only while it is tried, so the starvation check
        # sees every other waiter, including starving ones queued behind it.
        index = 0
        while index < len(self.queued):
            ticket = self.queued.pop(index)
            state = self.effects.model_state(ticket.model)
            if state is None:
                self._fail(ticket, UnknownModelError(f"model {ticket.model} is no longer configured"))
                continue
            if not self._try_place(ticket, state):
                self.queued.insert(index, ticket)
                index += 1

    def _grant(self, ticket: Ticket) -> None:
        slot = self.slot_limits.get(ticket.model)
        if slot is not None and (
            self.slot_waiters.get(ticket.model) or self.in_flight.get(ticket.model, 0) >= slot.max_concurrent
        ):
            self.slot_waiters.setdefault(ticket.model, []).append(ticket)
            return
        self._grant_now(ticket)

    def _grant_waiting_slots(self, model_id: str) -> None:
        """Let requests waiting for a slot in, oldest first, while `model_id` has free slots."""
        waiters = self.slot_waiters.get(model_id)
        while waiters:
            slot = self.slot_limits.get(model_id)
            if slot is not None and self.in_flight.get(model_id, 0) >= slot.max_concurrent:
                return
            ticket = waiters.pop(0)
            state = self.effects.model_state(model_id)
            if state == ProcessState.READY:
                self._grant_now(ticket)
            elif state is None:
                self._fail(ticket, UnknownModelError(f"model {model_id} is no longer configured"))
            elif not self._try_place(ticket, state):  # the model stopped meanwhile: start it again
                self._enqueue(ticket)
        self.slot_waiters.pop(model_id, None)

    def _grant_now(self, ticket: Ticket) -> None:
        if self.effects.grant(ticket):
            ticket.granted = True
            self.in_flight[ticket.model] = self.in_flight.get(ticket.model, 0) + 1
        else:
            self._release(ticket.model)

    def _fail(self, ticket: Ticket, error: Exception) -> None:
        self._release(ticket.model)
        self.effects.fail(ticket, error)

    def _release(self, model_id: str) -> None:
        count = self.reserved.get(model_id, 0) - 1
        if count <= 0:
            self.reserved.pop(model_id, None)
        else:
            self.reserved[model_id] = count
