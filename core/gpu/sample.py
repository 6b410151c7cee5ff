"""What one GPU looks like at one moment, and what a GPU reader promises.

Every vendor reader turns its own driver interface into the same
:class:`GpuSample`, so the poller, the ``gpu.sample`` events, the Prometheus
gauges and ``GET /api/gpu`` never need to know which vendor they are looking at.

Memory is always reported, in bytes: it is the one figure the dashboard cannot do
without (will the next model fit?). A device whose memory cannot be read is left
out of that read instead of being shown as empty. Utilisation, temperature and
power are ``None`` when the driver does not expose them or fails to read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

GpuVendor = Literal["nvidia", "amd", "apple"]


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One GPU's state at one poll.

    ``index`` counts the vendor's devices from 0 in the order its driver lists them;
    ``(vendor, index)`` identifies a GPU within one process. ``unified_memory`` is true
    when the GPU allocates from system memory (Apple Silicon, AMD APUs, NVIDIA
    unified-memory boards): then the memory figures describe that shared pool.
    """

    index: int
    name: str
    vendor: GpuVendor
    memory_used_bytes: int
    memory_total_bytes: int
    utilization_percent: float | None = None
    temperature_c: float | None = None
    power_watts: float | None = None
    unified_memory: bool = False
    core_count: int | None = None
    uuid: str | None = None
    bus_id: str | None = None


class GpuUnavailableError(Exception):
    """This reader cannot work on this machine (no driver, no library, no device)."""


class GpuReadError(Exception):
    """A reader that worked before could not read its devices this time."""


@runtime_checkable
class GpuReader(Protocol):
    """Reads every GPU of one vendor interface.

    ``read`` is blocking (it calls into a driver or runs a command) and is meant to be
    called from a worker thread, one call at a time. ``close`` releases the driver
    handle; it is safe to call twice.
    """

    name: str

    def read(self) -> list[GpuSample]: ...

    def close(self) -> None: ...
