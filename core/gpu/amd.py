"""AMD GPUs through AMD SMI (the ``amdsmi`` module), or the amdgpu driver's sysfs files.

``amdsmi`` needs ROCm's ``libamd_smi.so``; most desktop and APU machines do not have
ROCm installed, so the kernel driver's files under ``/sys/class/drm/card*/device`` are
the fallback that works everywhere amdgpu runs:

* ``vendor`` is ``0x1002`` for AMD;
* ``mem_info_vram_used`` / ``mem_info_vram_total`` and ``mem_info_gtt_used`` /
  ``mem_info_gtt_total`` are bytes;
* ``gpu_busy_percent`` is an integer percentage;
* ``hwmon/hwmon*/temp1_input`` is milli-degrees Celsius (the edge sensor);
* ``hwmon/hwmon*/power1_average`` (older kernels) or ``power1_input`` (newer ones) is microwatts.

APUs (Ryzen AI Max "Strix Halo", Phoenix, ...) get a small VRAM carve-out from the
firmware and allocate everything else from system memory through GTT. Reporting the
carve-out would say a 128 GB machine has 512 MB for models, so for them the GTT pool
is reported as the usable memory (see :func:`usable_memory`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from core.gpu.sample import GpuReadError, GpuSample, GpuUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")

AMD_PCI_VENDOR = "0x1002"
APU_VRAM_LIMIT_BYTES = 2 * 1024**3
PCI_IDS_PATHS = (Path("/usr/share/misc/pci.ids"), Path("/usr/share/hwdata/pci.ids"), Path("/usr/share/pci.ids"))


def usable_memory(
    vram_used: int, vram_total: int, gtt_used: int | None, gtt_total: int | None
) -> tuple[int, int, bool]:
    """(used, total, unified) bytes a model can use on this AMD GPU.

    A GPU whose VRAM is under 2 GiB while its GTT pool is larger is an APU with a
    firmware carve-out: its usable memory is the GTT pool (system memory). Anything
    else is a discrete card (or an APU whose carve-out was set large in the
    firmware), whose usable memory is its VRAM.
    """
    is_apu = gtt_total is not None and gtt_used is not None and vram_total < APU_VRAM_LIMIT_BYTES < gtt_total
    if is_apu:
        return gtt_used, gtt_total, True
    return vram_used, vram_total, False


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def pci_device_name(vendor_id: str, device_id: str, paths: tuple[Path, ...] = PCI_IDS_PATHS) -> str | None:
    """The device's name from the system's ``pci.ids`` database, if one is installed.

    ``vendor_id`` and ``device_id`` are sysfs-style (``0x1002``, ``0x744c``). Returns
    e.g. ``"Navi 31 [Radeon RX 7900 XT/7900 XTX/7900M]"``.
    """
    vendor = vendor_id.lower().removeprefix("0x")
    device = device_id.lower().removeprefix("0x")
    for path in paths:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        in_vendor = False
        for line in lines:
            if not line or line.startswith("#"):
                continue
            if not line.startswith("\t"):
                if in_vendor:
                    break
                in_vendor = line[:4].lower() == vendor
            elif in_vendor and not line.startswith("\t\t") and line[1:5].lower() == device:
                return line[5:].strip()
        return None
    return None


@dataclass(frozen=True, slots=True)
class _SysfsCard:
    index: int
    device_dir: Path
    name: str
    uuid: str | None
    bus_id: str | None


class AmdSysfsReader:
    """Reads AMD GPUs from the amdgpu driver's sysfs files.

    ``drm_root`` is ``/sys/class/drm`` on a real machine; tests point it at a fake
    tree. Cards are found once, when the reader is built; values are read on every
    :meth:`read`. Raises :class:`GpuUnavailableError` when no amdgpu card is found.
    """

    name = "amd-sysfs"

    def __init__(self, drm_root: Path = Path("/sys/class/drm"), pci_ids_paths: tuple[Path, ...] = PCI_IDS_PATHS):
        self._cards = self._find_cards(Path(drm_root), pci_ids_paths)
        if not self._cards:
            raise GpuUnavailableError(f"no amdgpu card under {drm_root}")

    @staticmethod
    def _find_cards(drm_root: Path, pci_ids_paths: tuple[Path, ...]) -> list[_SysfsCard]:
        numbered = []
        try:
            entries = list(drm_root.iterdir())
        except OSError:
            return []
        for entry in entries:
            match = re.fullmatch(r"card(\d+)", entry.name)  # card0-DP-1 etc. are connectors, not GPUs
            if match:
                numbered.append((int(match.group(1)), entry / "device"))
        cards = []
        for _, device_dir in sorted(numbered):
            if (_read_text(device_dir / "vendor") or "").lower() != AMD_PCI_VENDOR:
                continue
            if _read_int(device_dir / "mem_info_vram_total") is None:  # not driven by amdgpu (e.g. legacy radeon)
                continue
            cards.append(
                _SysfsCard(
                    index=len(cards),
                    device_dir=device_dir,
                    name=AmdSysfsReader._card_name(device_dir, pci_ids_paths),
                    uuid=_read_text(device_dir / "unique_id") or None,
                    bus_id=AmdSysfsReader._bus_id(device_dir),
                )
            )
        return cards

    @staticmethod
    def _card_name(device_dir: Path, pci_ids_paths: tuple[Path, ...]) -> str:
        product = _read_text(device_dir / "product_name")
        if product:
            return product
        device_id = _read_text(device_dir / "device") or "unknown"
        return pci_device_name(AMD_PCI_VENDOR, device_id, pci_ids_paths) or f"AMD GPU {device_id}"

    @staticmethod
    def _bus_id(device_dir: Path) -> str | None:
        for line in (_read_text(device_dir / "uevent") or "").splitlines():
            key, _, value = line.partition("=")
            if key == "PCI_SLOT_NAME" and value:
                return value
        return None

    def read(self) -> list[GpuSample]:
        samples = []
        for card in self._cards:
            sample = self._read_card(card)
            if sample is not None:
                samples.append(sample)
        if self._cards and not samples:
            raise GpuReadError("no AMD card could be read")
        return samples

    def _read_card(self, card: _SysfsCard) -> GpuSample | None:
        device = card.device_dir
        vram_used = _read_int(device / "mem_info_vram_used")
        vram_total = _read_int(device / "mem_info_vram_total")
        if vram_used is None or vram_total is None:
            log.warning("AMD GPU %d (%s): memory is not readable, left out of this read", card.index, device)
            return None
        used, total, unified = usable_memory(
            vram_used, vram_total, _read_int(device / "mem_info_gtt_used"), _read_int(device / "mem_info_gtt_total")
        )
        busy = _read_int(device / "gpu_busy_percent")
        temperature = power = None
        hwmon = self._hwmon_dir(device)
        if hwmon is not None:
            millidegrees = _read_int(hwmon / "temp1_input")
            temperature = None if millidegrees is None else millidegrees / 1000.0
            microwatts = _read_int(hwmon / "power1_average")
            if microwatts is None:
                microwatts = _read_int(hwmon / "power1_input")
            power = None if microwatts is None else microwatts / 1_000_000.0
        return GpuSample(
            index=card.index,
            name=card.name,
            vendor="amd",
            memory_used_bytes=used,
            memory_total_bytes=total,
            utilization_percent=None if busy is None else float(busy),
            temperature_c=temperature,
            power_watts=power,
            unified_memory=unified,
            uuid=card.uuid,
            bus_id=card.bus_id,
        )

    @staticmethod
    def _hwmon_dir(device_dir: Path) -> Path | None:
        try:
            return min((device_dir / "hwmon").glob("hwmon*"), default=None)
        except OSError:
            return None

    def close(self) -> None:
        """Nothing to release: sysfs files are opened per read."""


def _import_amdsmi() -> ModuleType:
    """Import ``amdsmi``, keeping the noise it prints when ROCm is absent out of the gateway's output.

    Without ``libamd_smi.so`` the module prints two lines and raises ``KeyError`` at import.
    """
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            import amdsmi  # imported here: only present with ROCm
    except Exception as exc:  # any import failure of a driver binding means "no AMD SMI here"
        detail = " ".join(printed.getvalue().split())
        raise GpuUnavailableError(f"amdsmi cannot be imported: {exc!r} {detail}".strip()) from exc
    return amdsmi


@dataclass(frozen=True, slots=True)
class _SmiDevice:
    index: int
    handle: Any
    name: str
    uuid: str | None
    bus_id: str | None


class AmdSmiReader:
    """Reads AMD GPUs through the ``amdsmi`` library (ROCm's AMD SMI).

    ``amdsmi`` is the binding module; tests pass a fake one. Raises
    :class:`GpuUnavailableError` when the module cannot be imported (its import fails
    when ``libamd_smi.so`` is missing), does not initialise, or lists no GPU.
    """

    name = "amdsmi"

    def __init__(self, amdsmi: ModuleType | Any | None = None):
        if amdsmi is None:
            amdsmi = _import_amdsmi()
        self._smi = amdsmi
        try:
            amdsmi.amdsmi_init()
        except Exception as exc:  # a C library failing to start is "no AMD here", whatever it raises
            raise GpuUnavailableError(f"amdsmi did not initialise: {exc}") from exc
        self._open = True
        try:
            handles = amdsmi.amdsmi_get_processor_handles()
        except amdsmi.AmdSmiException as exc:
            self.close()
            raise GpuUnavailableError(f"amdsmi could not list GPUs: {exc}") from exc
        if not handles:
            self.close()
            raise GpuUnavailableError("amdsmi lists no GPU")
        self._devices = [self._describe(index, handle) for index, handle in enumerate(handles)]

    def _describe(self, index: int, handle: Any) -> _SmiDevice:
        smi = self._smi
        asic = self._field(lambda: smi.amdsmi_get_gpu_asic_info(handle)) or {}
        name = asic.get("market_name")
        return _SmiDevice(
            index=index,
            handle=handle,
            name=name if name and name != "N/A" else f"AMD GPU {index}",
            uuid=self._field(lambda: smi.amdsmi_get_gpu_device_uuid(handle)),
            bus_id=self._field(lambda: smi.amdsmi_get_gpu_device_bdf(handle)),
        )

    def _field(self, query: Callable[[], T]) -> T | None:
        try:
            return query()
        except self._smi.AmdSmiException as exc:
            log.debug("amdsmi query failed: %s", exc)
            return None

    @staticmethod
    def _number(value: Any) -> float | None:
        """amdsmi marks an unsupported value with the string "N/A"."""
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    def read(self) -> list[GpuSample]:
        if not self._open:
            raise GpuReadError("the AMD SMI reader is closed")
        samples = [sample for device in self._devices if (sample := self._read_device(device)) is not None]
        if not samples:
            raise GpuReadError("no AMD GPU could be read")
        return samples

    def _read_device(self, device: _SmiDevice) -> GpuSample | None:
        smi, handle = self._smi, device.handle
        vram_total = self._field(lambda: smi.amdsmi_get_gpu_memory_total(handle, smi.AmdSmiMemoryType.VRAM))
        vram_used = self._field(lambda: smi.amdsmi_get_gpu_memory_usage(handle, smi.AmdSmiMemoryType.VRAM))
        if vram_total is None or vram_used is None:
            log.warning("AMD GPU %d: memory is not readable, left out of this read", device.index)
            return None
        used, total, unified = usable_memory(
            int(vram_used),
            int(vram_total),
            self._field(lambda: smi.amdsmi_get_gpu_memory_usage(handle, smi.AmdSmiMemoryType.GTT)),
            self._field(lambda: smi.amdsmi_get_gpu_memory_total(handle, smi.AmdSmiMemoryType.GTT)),
        )
        activity = self._field(lambda: smi.amdsmi_get_gpu_activity(handle)) or {}
        return GpuSample(
            index=device.index,
            name=device.name,
            vendor="amd",
            memory_used_bytes=used,
            memory_total_bytes=total,
            utilization_percent=self._number(activity.get("gfx_activity")),
            temperature_c=self._temperature(handle),
            power_watts=self._power(handle),
            unified_memory=unified,
            uuid=device.uuid,
            bus_id=device.bus_id,
        )

    def _temperature(self, handle: Any) -> float | None:
        """The edge sensor, or the hotspot where there is no edge sensor (Instinct MI300)."""
        smi = self._smi
        for sensor in (smi.AmdSmiTemperatureType.EDGE, smi.AmdSmiTemperatureType.HOTSPOT):
            value = self._field(
                lambda sensor=sensor: smi.amdsmi_get_temp_metric(handle, sensor, smi.AmdSmiTemperatureMetric.CURRENT)
            )
            if (number := self._number(value)) is not None and number > 0:
                return number
        return None

    def _power(self, handle: Any) -> float | None:
        """Watts: the current socket power, or the average where the current one is unsupported (0 or N/A)."""
        info = self._field(lambda: self._smi.amdsmi_get_power_info(handle)) or {}
        for key in ("current_socket_power", "average_socket_power"):
            if (watts := self._number(info.get(key))) is not None and watts > 0:
                return watts
        return None

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            self._smi.amdsmi_shut_down()
        except self._smi.AmdSmiException as exc:
            log.debug("amdsmi_shut_down failed: %s", exc)
