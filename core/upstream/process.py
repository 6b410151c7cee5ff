"""One local model server process and its lifecycle.

States and the transitions allowed between them::

    stopped ──start──▶ starting ──healthy──▶ ready ──stop──▶ stopping ──▶ stopped
        ▲                  │                   │
        │               failed ◀───crash───────┘
        └───── start ──────┘           (any) ──shutdown──▶ shutdown

Every start and stop goes through one lock, so a request that arrives while a
TTL unload is stopping the process waits for the stop and then starts it again
(`ensure_ready` decides from the state it owns, never from a stale snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import os
import signal
import sys
import time
from collections.abc import Callable

import httpx

from core.config.schema import ModelConfig, split_command
from core.logbook import LogRing


class ProcessState(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"
    SHUTDOWN = "shutdown"


_TRANSITIONS: dict[ProcessState, set[ProcessState]] = {
    ProcessState.STOPPED: {ProcessState.STARTING, ProcessState.SHUTDOWN},
    ProcessState.STARTING: {ProcessState.READY, ProcessState.FAILED, ProcessState.STOPPING, ProcessState.SHUTDOWN},
    ProcessState.READY: {ProcessState.STOPPING, ProcessState.FAILED, ProcessState.SHUTDOWN},
    ProcessState.STOPPING: {ProcessState.STOPPED, ProcessState.SHUTDOWN},
    ProcessState.FAILED: {ProcessState.STARTING, ProcessState.STOPPING, ProcessState.STOPPED, ProcessState.SHUTDOWN},
    ProcessState.SHUTDOWN: set(),
}


class UpstreamStartError(RuntimeError):
    """The model server did not become healthy; carries its last log lines."""

    def __init__(self, model_id: str, reason: str, log_tail: str):
        self.model_id = model_id
        self.reason = reason
        self.log_tail = log_tail
        message = f"model {model_id} failed to start: {reason}"
        if log_tail:
            message += f"\nlast log lines:\n{log_tail}"
        super().__init__(message)


def _parent_death_signal() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM the child if the gateway dies without cleaning up (no orphans)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


StateListener = Callable[["ModelProcess", ProcessState, ProcessState], None]


class ModelProcess:
    """Owns the OS process for one configured model."""

    def __init__(
        self,
        config: ModelConfig,
        log: LogRing,
        http: httpx.AsyncClient,
        on_state: StateListener | None = None,
    ):
        self.config = config
        self.log = log
        self._http = http
        self._on_state = on_state
        self._state = ProcessState.STOPPED
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.started_at: float | None = None
        self.ready_at: float | None = None
        self.last_load_seconds: float | None = None
        self.last_exit_code: int | None = None
        #: why the server was last asked to stop ("swap to b", "ttl", "unload" …), for the load history
        self.stop_reason: str | None = None

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def state(self) -> ProcessState:
        return self._state

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.returncode is None else None

    @property
    def base_url(self) -> str:
        return self.config.proxy

    def _set_state(self, new: ProcessState) -> None:
        old = self._state
        if new == old:
            return
        if new not in _TRANSITIONS[old]:
            raise RuntimeError(f"model {self.id}: invalid state transition {old} → {new}")
        self._state = new
        if self._on_state:
            self._on_state(self, old, new)

    async def ensure_ready(self) -> None:
        """Start the server unless it is already ready; waits for a stop in progress first."""
        async with self._lock:
            if self._state == ProcessState.READY and self._alive():
                return
            if self._state == ProcessState.SHUTDOWN:
                raise UpstreamStartError(self.id, "the gateway is shutting down", "")
            if self._state == ProcessState.READY:  # died without us noticing yet
                self._set_state(ProcessState.FAILED)
            await self._start()

    async def _start(self) -> None:
        self._set_state(ProcessState.STARTING)
        self.started_at = time.monotonic()
        args = split_command(self.config.cmd)
        env = {**os.environ, **self.config.environment}
        self.log.write(f"[switchyard] starting {self.id}: {' '.join(args)}")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_parent_death_signal if sys.platform == "linux" else None,
            )
        except OSError as exc:
            self.log.write(f"[switchyard] could not run {args[0]!r}: {exc}")
            self._set_state(ProcessState.FAILED)
            raise UpstreamStartError(self.id, f"could not run {args[0]!r}: {exc.strerror or exc}", self.log.tail_text())
        self._reader = asyncio.create_task(self._read_output(self._proc), name=f"log-reader:{self.id}")
        try:
            await self._wait_healthy(self._proc)
        except BaseException:
            await self._terminate(self._proc, self.config.unload_timeout)
            if self._state != ProcessState.SHUTDOWN:
                self._set_state(ProcessState.FAILED)
            raise
        self.ready_at = time.monotonic()
        self.last_load_seconds = self.ready_at - self.started_at
        self.log.write(f"[switchyard] {self.id} ready in {self.last_load_seconds:.2f}s")
        self._set_state(ProcessState.READY)

    async def _wait_healthy(self, proc: asyncio.subprocess.Process) -> None:
        deadline = time.monotonic() + self.config.health_check_timeout
        if self.config.check_endpoint == "none":
            await asyncio.sleep(0)
            if proc.returncode is not None:
                raise self._exit_error(proc)
            return
        url = self.config.proxy + self.config.check_endpoint
        started = time.monotonic()
        while True:
            if proc.returncode is not None:
                raise self._exit_error(proc)
            try:
                response = await self._http.get(url, timeout=httpx.Timeout(2.0, connect=1.0))
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() >= deadline:
                raise UpstreamStartError(
                    self.id,
                    f"not healthy at {url} after {self.config.health_check_timeout:g}s (healthCheckTimeout)",
                    self.log.tail_text(),
                )
            exited = asyncio.ensure_future(proc.wait())
            done, _ = await asyncio.wait({exited}, timeout=_health_poll_interval(time.monotonic() - started))
            if not done:
                exited.cancel()

    def _exit_error(self, proc: asyncio.subprocess.Process) -> UpstreamStartError:
        self.last_exit_code = proc.returncode
        return UpstreamStartError(
            self.id, f"the process exited with code {proc.returncode} before it was healthy", self.log.tail_text()
        )

    async def _read_output(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            try:
                line = await proc.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):  # an over-long line: keep going
                continue
            if not line:
                break
            self.log.write(line.decode("utf-8", "replace"))
        code = await proc.wait()
        self.last_exit_code = code
        if proc is self._proc and self._state == ProcessState.READY:
            self.log.write(f"[switchyard] {self.id} exited unexpectedly with code {code}")
            self._set_state(ProcessState.FAILED)

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def stop(self, reason: str = "unload") -> None:
        async with self._lock:
            if self._state in (ProcessState.STOPPED, ProcessState.SHUTDOWN):
                return
            self.stop_reason = reason
            if self._state != ProcessState.FAILED or self._alive():
                self._set_state(ProcessState.STOPPING)
                self.log.write(f"[switchyard] stopping {self.id} ({reason})")
                if self._proc is not None:
                    await self._terminate(self._proc, self.config.unload_timeout)
                self._set_state(ProcessState.STOPPED)
            else:
                self._set_state(ProcessState.STOPPED)

    async def shutdown(self) -> None:
        """Stop for good: used when the gateway exits. Never raises."""
        async with self._lock:
            if self._proc is not None and self._proc.returncode is None:
                await self._terminate(self._proc, self.config.unload_timeout)
            if self._state != ProcessState.SHUTDOWN:
                self._set_state(ProcessState.SHUTDOWN)

    async def _terminate(self, proc: asyncio.subprocess.Process, timeout: float) -> None:
        if proc.returncode is None:
            stop_args = self.config.stop_args
            if stop_args:
                args = [arg.replace("${PID}", str(proc.pid)) for arg in stop_args]
                with contextlib.suppress(OSError):
                    stopper = await asyncio.create_subprocess_exec(
                        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stopper.wait(), timeout)
            else:
                _signal_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                self.log.write(f"[switchyard] {self.id} did not exit within {timeout:g}s, killing it")
                _signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()
        # whatever the model server left behind in its process group goes too
        _signal_group(proc.pid, signal.SIGKILL)
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, 1.0)
        self.last_exit_code = proc.returncode


def _health_poll_interval(waited: float) -> float:
    """Poll often while a fast server is likely to come up (every ms of delay is added to a cold start),
    then back off for big models that take minutes to load."""
    if waited < 3:
        return 0.005
    if waited < 30:
        return 0.05
    return 0.25


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
