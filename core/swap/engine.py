"""The swap engine: one asyncio task that owns every local model's state.

Callers never touch model state directly. They post events (request, cancel,
serve done, unload, tick, shutdown) to the engine's queue; the run task feeds
them to the :class:`FifoScheduler`, whose side effects (start a swap, grant,
fail, stop) are carried out here by spawning tasks that report back with more
events.

Beyond llama-swap, the engine knows *who* loaded each model (``origin``: an admin action or an API
request; the max-loaded cap in :mod:`core.swap.capacity` uses it), per-model serving controls that apply
without a restart (slot limits and idle timeouts from library presets), and Ollama's ``keep_alive``
(a per-load idle timeout; 0 unloads the model once its requests are done).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from core.config.schema import Config, ModelConfig
from core.events import EventBus
from core.logbook import LogBook
from core.swap.capacity import LoadedModelCap, is_embedding_model
from core.swap.matrix import LoadTimes
from core.swap.policy import EvictionPolicy, policy_for
from core.swap.scheduler import FifoScheduler, SlotLimit, Ticket
from core.upstream.process import ModelProcess, ProcessState

log = logging.getLogger("switchyard.swap")


class GatewayShuttingDown(Exception):
    pass


@dataclass(eq=False)
class Lease:
    """A granted request slot on a ready model; give it back with :meth:`SwapEngine.release`."""

    model_id: str
    process: ModelProcess
    released: bool = False

    @property
    def base_url(self) -> str:
        return self.process.base_url


PolicyFactory = Callable[[Config], EvictionPolicy]


@dataclass(frozen=True, slots=True)
class ServingControls:
    """Per-model serving settings that apply to a running model (no restart): LlamaMan's max concurrent
    requests with a bounded waiting queue, and the idle timeout after which the model is stopped."""

    max_concurrent: int = 0  # 0: no limit
    queue_depth: int | None = None  # None: only the concurrency limit bounds waiting requests
    idle_timeout: int | None = None  # seconds; None: the config's ttl; 0: never


class SwapEngine:
    def __init__(
        self,
        config: Config,
        *,
        logs: LogBook,
        events: EventBus | None = None,
        policy_factory: PolicyFactory | None = None,
        starvation_bound: float = 10.0,
        on_model_event: Callable[[str, str, dict[str, Any]], None] | None = None,
    ):
        self.logs = logs
        self.events = events or EventBus()
        # learned load times survive config reloads (the matrix policy's costs depend on them)
        self.load_times = LoadTimes()
        self._policy_factory = policy_factory or (lambda c: policy_for(c, load_times=self.load_times))
        self._starvation_bound = starvation_bound
        self._on_model_event = on_model_event
        self._http = httpx.AsyncClient(trust_env=False)
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._last_used: dict[str, float] = {}
        #: origin of the request that loaded each starting/ready model ("admin", "ollama", "api")
        self._started_by: dict[str, str] = {}
        self._pending_origin: dict[str, str] = {}
        self._serving: dict[str, ServingControls] = {}
        #: Ollama keep_alive per loaded model, in seconds (math.inf: never unload); cleared when it stops
        self._keep_alive: dict[str, float] = {}
        #: unloads waiting for the model's requests to finish: model → [(reason, future)]
        self._idle_unloads: dict[str, list[tuple[str, asyncio.Future[None]]]] = {}
        self.swap_count = 0
        self._handlers: dict[str, Callable[[Any], None]] = {
            "request": self._on_request,
            "cancel": lambda t: self.scheduler.on_cancel(t),
            "serve_done": self._on_serve_done,
            "serving": self._on_serving,
            "keep_alive": self._on_keep_alive,
            "swap_done": lambda e: self.scheduler.on_swap_done(*e),
            "unload": self._on_unload,
            "reload": self._on_reload,
            "tick": lambda _: self._on_tick(),
        }
        self.processes: dict[str, ModelProcess] = {}
        self.config = config
        self._apply_config(config)

    # ------------------------------------------------------------------ public

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="swap-engine")
        self._ticker = asyncio.create_task(self._tick_loop(), name="swap-engine-ticker")
        for model_id in self.config.preload:
            self._spawn(self._preload(model_id))

    async def acquire(self, model_id: str, *, origin: str = "api") -> Lease:
        """Wait until `model_id` is ready and a request slot is granted.

        `origin` says who asks: ``"api"`` (inference clients), ``"ollama"`` (the Ollama API) or ``"admin"``
        (an operator's load action or a preload); see :mod:`core.swap.capacity`.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ticket = Ticket(model=model_id, arrived=time.monotonic(), context=future, origin=origin)
        self._post("request", ticket)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                self._post("serve_done", model_id)
            else:
                self._post("cancel", ticket)
            raise
        return Lease(model_id, self.processes[model_id])

    def release(self, lease: Lease) -> None:
        if lease.released:
            return
        lease.released = True
        self._last_used[lease.model_id] = time.monotonic()
        self._post("serve_done", lease.model_id)

    async def unload(
        self, model_ids: Iterable[str] | None = None, reason: str = "unload", *, when_idle: bool = False
    ) -> None:
        """Stop the given models (all when None) and wait until they are stopped.

        With `when_idle`, a model still serving or holding queued requests is stopped once they are done
        (Ollama's ``keep_alive: 0``) instead of failing them.
        """
        targets = list(self.processes) if model_ids is None else [m for m in model_ids if m in self.processes]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(("unload", (targets, reason, when_idle, done)))
        await done

    def set_serving_controls(self, controls: Mapping[str, ServingControls]) -> None:
        """Replace every model's serving controls; they apply from the next request, without a restart."""
        self._queue.put_nowait(("serving", dict(controls)))

    def set_keep_alive(self, model_id: str, seconds: float) -> None:
        """Ollama ``keep_alive``: stop `model_id` after `seconds` without requests (math.inf: never), for as
        long as it stays loaded. 0 stops it as soon as its requests are done."""
        self._queue.put_nowait(("keep_alive", (model_id, seconds)))

    def idle_timeout(self, model_id: str) -> float | None:
        """Seconds without requests before `model_id` is stopped; None: never."""
        if model_id in self._keep_alive:
            seconds = self._keep_alive[model_id]
            return None if math.isinf(seconds) else seconds
        controls = self._serving.get(model_id)
        if controls is not None and controls.idle_timeout is not None:
            return controls.idle_timeout or None
        process = self.processes.get(model_id)
        ttl = process.config.ttl if process is not None else 0
        return ttl if ttl > 0 else None

    def idle_expiry(self, model_id: str) -> float | None:
        """When (epoch seconds) an idle `model_id` will be stopped if no request comes; None: never."""
        timeout = self.idle_timeout(model_id)
        process = self.processes.get(model_id)
        if timeout is None or process is None:
            return None
        now = time.monotonic()
        last = self._last_used.get(model_id, process.ready_at or now)
        if self.scheduler.is_busy(model_id):
            last = now
        return time.time() + max(0.0, timeout - (now - last))

    def started_by(self, model_id: str) -> str | None:
        """The origin of the request that loaded `model_id` ("admin", "ollama", "api"), None when not loaded."""
        return self._started_by.get(model_id)

    async def reload(self, config: Config) -> None:
        """Apply a new config; models whose effective settings did not change keep running."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(("reload", (config, done)))
        await done

    async def shutdown(self) -> None:
        """Fail waiting requests and stop every model process. Safe to call twice."""
        if self._task is None:
            await self._stop_all()
            return
        self._queue.put_nowait(("shutdown", None))
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        self._ticker.cancel()
        for task in list(self._side_tasks):
            task.cancel()
        await asyncio.gather(*self._side_tasks, return_exceptions=True)
        await self._stop_all()
        await self._http.aclose()

    def status(self) -> list[dict[str, Any]]:
        out = []
        for model_id, process in sorted(self.processes.items()):
            out.append(
                {
                    "model": model_id,
                    "state": process.state.value,
                    "pid": process.pid,
                    "proxy": process.base_url,
                    "in_flight": self.scheduler.in_flight.get(model_id, 0),
                    "queued": self.scheduler.queued_for(model_id),
                    "ready_since": process.ready_at,
                    "last_load_seconds": process.last_load_seconds,
                    "ttl": process.config.ttl,
                    "idle_timeout": self.idle_timeout(model_id),
                    "origin": self._started_by.get(model_id),
                }
            )
        return out

    def states(self) -> dict[str, str]:
        """Current process state of every local model, by id."""
        return {model_id: process.state.value for model_id, process in self.processes.items()}

    def state_of(self, model_id: str) -> str | None:
        process = self.processes.get(model_id)
        return process.state.value if process else None

    def in_flight_total(self) -> int:
        return sum(self.scheduler.in_flight.values())

    def in_flight_by_model(self) -> dict[str, int]:
        """Requests being served now, per model (models with none left out)."""
        return {model_id: count for model_id, count in sorted(self.scheduler.in_flight.items()) if count}

    # --------------------------------------------------------------- internals

    def _apply_config(self, config: Config) -> list[str]:
        """Rebuild processes/policy for `config`; returns models that must stop."""
        to_stop = []
        local_models = {m: model for m, model in config.models.items() if model.upstream is None}
        for model_id, process in list(self.processes.items()):
            new = local_models.get(model_id)
            if new is None or new != process.config:
                to_stop.append(model_id)
        self.config = config
        self.policy = self._policy_factory(config)
        if config.library is not None and config.library.max_loaded > 0:
            self.policy = LoadedModelCap(
                self.policy,
                config.library.max_loaded,
                last_used=self._last_used.get,
                started_by=self._started_by.get,
                uncounted=[m for m, model in local_models.items() if is_embedding_model(model)],
                managed=config.library_models,
            )
        keep = {m: p for m, p in self.processes.items() if m not in to_stop}
        self._retired = [p for m, p in self.processes.items() if m in to_stop]
        self.processes = keep
        for model_id, model in local_models.items():
            if model_id not in self.processes:
                self.processes[model_id] = self._make_process(model)
        limits = {m.id: m.concurrency_limit for m in local_models.values()}
        old = getattr(self, "scheduler", None)
        self.scheduler = FifoScheduler(
            self.policy,
            _EngineEffects(self),
            limits=limits,
            priority=config.priority,
            starvation_bound=self._starvation_bound,
            clock=time.monotonic,
        )
        if old is not None:
            # carry over live bookkeeping for models that still exist
            self.scheduler.in_flight = {m: n for m, n in old.in_flight.items() if m in self.processes}
            self.scheduler.reserved = {m: n for m, n in old.reserved.items() if m in self.processes}
            self.scheduler.active = {m: s for m, s in old.active.items() if m in self.processes}
            self.scheduler.queued = [t for t in old.queued if t.model in self.processes]
            self.scheduler.slot_waiters = {m: w for m, w in old.slot_waiters.items() if m in self.processes}
        self.scheduler.set_slot_limits(self._slot_limits())
        return to_stop

    def _slot_limits(self) -> dict[str, SlotLimit]:
        return {m: SlotLimit(c.max_concurrent, c.queue_depth) for m, c in self._serving.items()}

    def _make_process(self, model: ModelConfig) -> ModelProcess:
        return ModelProcess(model, self.logs.ring(model.id), self._http, on_state=self._state_changed)

    def _state_changed(self, process: ModelProcess, old: ProcessState, new: ProcessState) -> None:
        if new == ProcessState.STARTING:
            self._started_by[process.id] = self._pending_origin.pop(process.id, "api")
        elif new in (ProcessState.STOPPED, ProcessState.FAILED, ProcessState.SHUTDOWN):
            self._started_by.pop(process.id, None)
            self._keep_alive.pop(process.id, None)
        data: dict[str, Any] = {"model": process.id, "state": new.value, "previous": old.value}
        if new == ProcessState.READY and process.last_load_seconds is not None:
            data["load_seconds"] = round(process.last_load_seconds, 4)
            self.policy.record_load(process.id, process.last_load_seconds)
        elif new in (ProcessState.STOPPING, ProcessState.STOPPED) and process.stop_reason:
            data["reason"] = process.stop_reason
        elif new == ProcessState.FAILED and old == ProcessState.READY and process.last_exit_code is not None:
            data["reason"] = f"exited with code {process.last_exit_code}"
        self.events.publish("model.state", **data)
        self.logs.ring("proxy").write(f"model {process.id}: {old.value} → {new.value}")
        if self._on_model_event:
            self._on_model_event(process.id, new.value, data)
        if new == ProcessState.FAILED and old == ProcessState.READY:
            self._queue.put_nowait(("tick", None))

    def _post(self, kind: str, payload: Any) -> None:
        """Hand an event to the scheduler.

        The scheduler is synchronous and only ever runs on the event loop's thread, so the owner of
        the model state is "whoever runs next on the loop, in order". When no earlier event is waiting,
        handling this one right here is exactly what the run task would do next — minus two task
        switches on every request (the common case: the model is ready). Otherwise it joins the queue
        behind the events that came first, and order is kept.
        """
        if self._task is not None and self._queue.empty() and not self._handling:
            self._handle(kind, payload)
        else:
            self._queue.put_nowait((kind, payload))

    _handling = False

    def _handle(self, kind: str, payload: Any) -> None:
        self._handling = True
        try:
            self._handlers[kind](payload)
        except Exception:  # a bug here must not wedge every future request
            log.exception("swap engine failed handling %s", kind)
        finally:
            self._handling = False

    async def _run(self) -> None:
        while True:
            kind, payload = await self._queue.get()
            if kind == "shutdown":
                self.scheduler.on_shutdown(GatewayShuttingDown("the gateway is shutting down"))
                return
            self._handle(kind, payload)

    def _on_request(self, ticket: Ticket) -> None:
        self._last_used[ticket.model] = time.monotonic()
        if ticket.origin == "admin" and ticket.model in self._started_by:
            self._started_by[ticket.model] = "admin"  # an operator's load pins an API-loaded model
        self.scheduler.on_request(ticket)

    def _on_serve_done(self, model_id: str) -> None:
        if model_id in self.processes:
            self.scheduler.on_serve_done(model_id)
            self._run_idle_unloads()

    def _on_serving(self, controls: dict[str, ServingControls]) -> None:
        self._serving = controls
        self.scheduler.set_slot_limits(self._slot_limits())
        self._on_tick()

    def _on_keep_alive(self, payload: tuple[str, float]) -> None:
        model_id, seconds = payload
        process = self.processes.get(model_id)
        if process is None or process.state not in (ProcessState.READY, ProcessState.STARTING):
            return  # a keep_alive outlives nothing: it belongs to the loaded instance
        self._keep_alive[model_id] = seconds
        self._on_tick()

    def _on_unload(self, payload: tuple[list[str], str, bool, asyncio.Future[None]]) -> None:
        targets, reason, when_idle, done = payload
        loop = asyncio.get_running_loop()
        deferred = [m for m in targets if when_idle and self.scheduler.is_busy(m)]
        now = [m for m in targets if m not in deferred]
        waits: list[asyncio.Future[None]] = []
        for model_id in deferred:
            future: asyncio.Future[None] = loop.create_future()
            self._idle_unloads.setdefault(model_id, []).append((reason, future))
            waits.append(future)
        self.scheduler.on_unload(now, reason)
        stopped: asyncio.Future[None] = loop.create_future()
        self._spawn(self._wait_stopped(now, stopped))
        waits.append(stopped)
        self._spawn(_resolve_after(waits, done))

    def _run_idle_unloads(self) -> None:
        """Carry out unloads that waited for their model to finish its requests."""
        for model_id in [m for m in self._idle_unloads if not self.scheduler.is_busy(m)]:
            waiters = self._idle_unloads.pop(model_id)
            self.scheduler.on_unload([model_id], waiters[0][0])
            for _, future in waiters:
                self._spawn(self._wait_stopped([model_id], future))

    async def _wait_stopped(self, targets: list[str], done: asyncio.Future[None]) -> None:
        try:
            for model_id in targets:
                process = self.processes.get(model_id)
                if process is not None:
                    async with process._lock:  # noqa: SLF001 - waits for the stop in progress
                        pass
        finally:
            if not done.done():
                done.set_result(None)

    def _on_reload(self, payload: tuple[Config, asyncio.Future[None]]) -> None:
        config, done = payload
        self._apply_config(config)
        retired, self._retired = self._retired, []

        async def stop_retired() -> None:
            try:
                await asyncio.gather(*(p.stop("config changed") for p in retired), return_exceptions=True)
            finally:
                if not done.done():
                    done.set_result(None)

        self._spawn(stop_retired())
        self.scheduler.on_tick()

    def _on_tick(self) -> None:
        now = time.monotonic()
        expired = []
        self._run_idle_unloads()
        for model_id, process in self.processes.items():
            ttl = self.idle_timeout(model_id)
            if ttl is None or process.state != ProcessState.READY or self.scheduler.is_busy(model_id):
                continue
            if now - self._last_used.get(model_id, process.ready_at or now) >= ttl:
                expired.append(model_id)
        if expired:
            self.scheduler.on_unload(expired, "ttl")
        self.scheduler.on_tick()

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self._queue.put_nowait(("tick", None))

    async def _swap(self, target: str, evict: list[str]) -> None:
        error: Exception | None = None
        try:
            if evict:
                self.swap_count += 1
                await asyncio.gather(*(self.processes[m].stop(f"swap to {target}") for m in evict))
            await self.processes[target].ensure_ready()
        except Exception as exc:  # reported to the waiting requests
            error = exc
        self._queue.put_nowait(("swap_done", (target, error)))

    async def _preload(self, model_id: str) -> None:
        try:
            lease = await self.acquire(model_id, origin="admin")
        except Exception as exc:
            self.logs.ring("proxy").write(f"preload of {model_id} failed: {exc}")
            return
        self.release(lease)

    async def _stop_all(self) -> None:
        processes = list(self.processes.values()) + list(getattr(self, "_retired", []))
        await asyncio.gather(*(p.shutdown() for p in processes), return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)


class _EngineEffects:
    def __init__(self, engine: SwapEngine):
        self.engine = engine

    def model_state(self, model_id: str) -> ProcessState | None:
        process = self.engine.processes.get(model_id)
        return process.state if process else None

    def running_models(self) -> Iterable[str]:
        return [m for m, p in self.engine.processes.items() if p.state in (ProcessState.READY, ProcessState.STARTING)]

    def start_swap(self, model_id: str, evict: list[str]) -> None:
        swap = self.engine.scheduler.active.get(model_id)
        if swap is not None and swap.waiters:
            self.engine._pending_origin[model_id] = swap.waiters[0].origin
        self.engine._spawn(self.engine._swap(model_id, evict))  # noqa: SLF001

    def grant(self, ticket: Ticket) -> bool:
        future: asyncio.Future[None] = ticket.context
        if future.done():
            return False
        future.set_result(None)
        return True

    def fail(self, ticket: Ticket, error: Exception) -> None:
        future: asyncio.Future[None] = ticket.context
        if not future.done():
            future.set_exception(error)

    def stop_models(self, model_ids: list[str], reason: str) -> None:
        for model_id in model_ids:
            process = self.engine.processes.get(model_id)
            if process is not None:
                self.engine._spawn(process.stop(reason))  # noqa: SLF001


async def _resolve_after(waits: list[asyncio.Future[None]], done: asyncio.Future[None]) -> None:
    try:
        await asyncio.gather(*waits, return_exceptions=True)
    finally:
        if not done.done():
            done.set_result(None)
