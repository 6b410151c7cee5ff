"""NVIDIA GPUs through NVML (the ``pynvml`` module of the nvidia-ml-py package).

NVML is initialised once when the reader is built and shut down by :meth:`NvidiaReader.close`.
The static facts (name, UUID, PCI bus id) are read once; memory, utilisation,
temperature and power on every :meth:`NvidiaReader.read`. A field the driver refuses
(for example power on a board without a power sensor) becomes ``None`` for that field
only, so one unsupported query never hides the rest of the GPU.

Unified-memory boards (Grace-Blackwell GB10, Jetson) answer the memory query with
NVML_ERROR_NOT_SUPPORTED because the GPU has no memory of its own; for those the
reader reports the system memory pool from ``/proc/meminfo`` and marks the sample
``unified_memory``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from core.gpu.sample import GpuReadError, GpuSample, GpuUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Device:
    index: int
    handle: Any
    name: str
    uuid: str | None
    bus_id: str | None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_system_memory(meminfo_path: Path) -> tuple[int, int]:
    """(used, total) bytes of system memory from a ``/proc/meminfo``-format file.

    Used is MemTotal − MemAvailable: what the kernel could not hand to a new
    allocation without swapping, which is what a unified-memory GPU competes for.
    """
    fields: dict[str, int] = {}
    for line in meminfo_path.read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[key.strip()] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    total = fields["MemTotal"]
    available = fields.get("MemAvailable", fields.get("MemFree", 0))
    return total - available, total


class NvidiaReader:
    """Reads every NVIDIA GPU NVML can see.

    ``nvml`` is the NVML binding module; it defaults to ``pynvml``. Tests pass a fake
    module object instead, so the real library is never patched.

    Raises :class:`GpuUnavailableError` when NVML cannot be loaded or initialised
    (no driver) or lists no usable device.
    """

    name = "nvml"

    def __init__(self, nvml: ModuleType | Any | None = None, meminfo_path: Path = Path("/proc/meminfo")):
        if nvml is None:
            try:
                import pynvml as nvml  # imported here: only needed on NVIDIA machines
            except Exception as exc:  # an import failure of a driver binding is "no NVIDIA here"
                raise GpuUnavailableError(f"pynvml cannot be imported: {exc}") from exc
        self._nvml = nvml
        self._meminfo_path = meminfo_path
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise GpuUnavailableError(f"NVML did not initialise: {exc}") from exc
        self._open = True
        try:
            self._devices = self._list_devices()
        except nvml.NVMLError as exc:
            self.close()
            raise GpuUnavailableError(f"NVML could not list devices: {exc}") from exc
        if not self._devices:
            self.close()
            raise GpuUnavailableError("NVML lists no usable device")

    def _list_devices(self) -> list[_Device]:
        nvml = self._nvml
        devices = []
        for index in range(nvml.nvmlDeviceGetCount()):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
            except nvml.NVMLError as exc:  # e.g. a GPU fallen off the bus, or not visible to this container
                log.warning("NVIDIA GPU %d is not readable and is left out: %s", index, exc)
                continue
            devices.append(self._describe(index, handle))
        return devices

    def _describe(self, index: int, handle: Any) -> _Device:
        nvml = self._nvml
        return _Device(
            index=index,
            handle=handle,
            name=self._field(lambda: _text(nvml.nvmlDeviceGetName(handle))) or f"NVIDIA GPU {index}",
            uuid=self._field(lambda: _text(nvml.nvmlDeviceGetUUID(handle))),
            bus_id=self._field(lambda: _text(nvml.nvmlDeviceGetPciInfo(handle).busId)),
        )

    def _field(self, query: Callable[[], T]) -> T | None:
        try:
            return query()
        except self._nvml.NVMLError as exc:
            log.debug("NVML query failed: %s", exc)
            return None

    def read(self) -> list[GpuSample]:
        if not self._open:
            raise GpuReadError("the NVIDIA reader is closed")
        samples = []
        for device in self._devices:
            sample = self._read_device(device)
            if sample is not None:
                samples.append(sample)
        if not samples:
            raise GpuReadError("no NVIDIA GPU could be read")
        return samples

    def _read_device(self, device: _Device) -> GpuSample | None:
        nvml, handle = self._nvml, device.handle
        unified = False
        try:
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            used, total = int(memory.used), int(memory.total)
        except nvml.NVMLError as exc:
            if getattr(exc, "value", None) != nvml.NVML_ERROR_NOT_SUPPORTED:
                log.warning("NVIDIA GPU %d: memory is not readable, left out of this read: %s", device.index, exc)
                return None
            try:
                used, total = read_system_memory(self._meminfo_path)
            except (OSError, KeyError, ValueError) as meminfo_exc:
                log.warning("NVIDIA GPU %d: unified memory is not readable: %s", device.index, meminfo_exc)
                return None
            unified = True
        utilization = self._field(lambda: float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
        temperature = self._field(lambda: float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)))
        milliwatts = self._field(lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        return GpuSample(
            index=device.index,
            name=device.name,
            vendor="nvidia",
            memory_used_bytes=used,
            memory_total_bytes=total,
            utilization_percent=utilization,
            temperature_c=temperature,
            power_watts=None if milliwatts is None else milliwatts / 1000.0,
            unified_memory=unified,
            uuid=device.uuid,
            bus_id=device.bus_id,
        )

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError as exc:
            log.debug("nvmlShutdown failed: %s", exc)
