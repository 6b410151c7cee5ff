"""Poll the GPU readers in the background and keep the last samples.

Driver calls block (NVML can take hundreds of milliseconds on a busy or waking GPU,
``ioreg`` is a subprocess), so every poll runs in a worker thread via
:func:`asyncio.to_thread` and the event loop never waits on a driver. Requests for
``GET /api/gpu`` read :meth:`GpuPoller.latest`, the cached result, instead of
touching a driver.

A reader that fails is left out of that poll and logged once until it recovers;
the other readers' samples still go out. The ``on_sample`` callback (the gateway
publishes ``gpu.sample`` events and sets Prometheus gauges from it) gets every
poll's samples; an exception in it is logged and polling continues.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from core.gpu.sample import GpuReader, GpuSample

log = logging.getLogger(__name__)

SampleCallback = Callable[[list[GpuSample]], None]


class GpuPoller:
    """Owns its readers from construction: :meth:`stop` closes them."""

    def __init__(
        self,
        readers: Sequence[GpuReader],
        interval: float = 10.0,
        on_sample: SampleCallback | None = None,
        stop_timeout: float = 5.0,
    ):
        if interval <= 0:
            raise ValueError("the GPU poll interval must be positive")
        self.readers = list(readers)
        self.interval = interval
        self._on_sample = on_sample
        self._stop_timeout = stop_timeout
        self._latest: list[GpuSample] = []
        self._sampled_at: float | None = None
        self._failing: set[str] = set()
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def latest(self) -> list[GpuSample]:
        """The samples of the last poll (empty before the first one, or without GPUs)."""
        return list(self._latest)

    @property
    def sampled_at(self) -> float | None:
        """Unix time of the last poll, None before the first."""
        return self._sampled_at

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start polling now and then every ``interval`` seconds. Without readers there is nothing to poll."""
        if self.running or not self.readers:
            return
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="gpu-poller")

    async def stop(self) -> None:
        """Stop polling and close the readers.

        A read in progress is allowed to finish (closing NVML under a running query is
        undefined behaviour); if a driver hangs longer than ``stop_timeout``, the task is
        abandoned and the readers are left open rather than closed under it.
        """
        task, self._task = self._task, None
        self._stopping.set()
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), self._stop_timeout)
            except TimeoutError:
                task.cancel()
                log.warning("a GPU read did not finish within %.1f s; readers left open", self._stop_timeout)
                return
        for reader in self.readers:
            try:
                reader.close()
            except Exception:
                log.exception("closing GPU reader %s failed", reader.name)

    async def poll_once(self) -> list[GpuSample]:
        """Read every GPU now (in a worker thread), update the cache and call ``on_sample``."""
        async with self._lock:
            samples = await asyncio.to_thread(self._read_all)
            self._latest = samples
            self._sampled_at = time.time()
        if self._on_sample is not None:
            try:
                self._on_sample(list(samples))
            except Exception:
                log.exception("the GPU sample callback failed")
        return samples

    def _read_all(self) -> list[GpuSample]:
        samples: list[GpuSample] = []
        for reader in self.readers:
            try:
                samples.extend(reader.read())
            except Exception as exc:  # noqa: BLE001 - one broken driver must not stop the others
                if reader.name not in self._failing:
                    self._failing.add(reader.name)
                    log.warning("GPU reader %s failed (logged once until it recovers): %s", reader.name, exc)
                continue
            if reader.name in self._failing:
                self._failing.discard(reader.name)
                log.info("GPU reader %s recovered", reader.name)
        return samples

    async def _run(self) -> None:
        while not self._stopping.is_set():
            await self.poll_once()
            try:
                await asyncio.wait_for(self._stopping.wait(), self.interval)
            except TimeoutError:
                pass
