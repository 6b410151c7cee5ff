"""The AMD readers: amdgpu's sysfs files in a fake tree, and AMD SMI through a fake module."""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path
from typing import Any

import pytest

from core.gpu import AmdSmiReader, AmdSysfsReader, GpuReadError, GpuUnavailableError, detect_readers, usable_memory

MIB = 1024**2
GIB = 1024**3


def make_card(
    drm_root: Path,
    number: int,
    *,
    vendor: str = "0x1002",
    device_id: str = "0x744c",
    files: dict[str, str | int] | None = None,
    hwmon: dict[str, int] | None = None,
    slot: str | None = None,
) -> Path:
    """Write /sys/class/drm/card<N>/device the way the amdgpu driver lays it out."""
    device = drm_root / f"card{number}" / "device"
    device.mkdir(parents=True)
    (device / "vendor").write_text(f"{vendor}\n")
    (device / "device").write_text(f"{device_id}\n")
    if slot:
        (device / "uevent").write_text(f"DRIVER=amdgpu\nPCI_CLASS=30000\nPCI_SLOT_NAME={slot}\n")
    for name, value in (files or {}).items():
        (device / name).write_text(f"{value}\n")
    if hwmon is not None:
        sensors = device / "hwmon" / "hwmon3"
        sensors.mkdir(parents=True)
        for name, value in hwmon.items():
            (sensors / name).write_text(f"{value}\n")
    return device


def discrete_card(drm_root: Path, number: int = 1) -> Path:
    """A 24 GiB Radeon RX 7900 XTX with its hwmon sensors (kernel ≤ 6.6 style power1_average)."""
    return make_card(
        drm_root,
        number,
        files={
            "mem_info_vram_total": 24 * GIB,
            "mem_info_vram_used": 5 * GIB,
            "mem_info_gtt_total": 16 * GIB,
            "mem_info_gtt_used": 30 * MIB,
            "gpu_busy_percent": 37,
            "unique_id": "8c8a3f1e2b7d4c60",
            "product_name": "Radeon RX 7900 XTX",
        },
        hwmon={"temp1_input": 54000, "power1_average": 123_000_000},
        slot="0000:03:00.0",
    )


def apu(drm_root: Path, number: int = 0) -> Path:
    """A Ryzen AI Max APU: a 512 MiB carve-out, 96 GiB reachable through GTT, newer kernel's power1_input."""
    return make_card(
        drm_root,
        number,
        device_id="0x1586",
        files={
            "mem_info_vram_total": 512 * MIB,
            "mem_info_vram_used": 300 * MIB,
            "mem_info_gtt_total": 96 * GIB,
            "mem_info_gtt_used": 41 * GIB,
            "gpu_busy_percent": 99,
        },
        hwmon={"temp1_input": 71500, "power1_input": 86_250_000},
        slot="0000:c5:00.0",
    )


def test_a_discrete_card_reports_vram_busy_percent_temperature_and_power(tmp_path: Path):
    discrete_card(tmp_path)

    (sample,) = AmdSysfsReader(drm_root=tmp_path).read()

    assert sample.vendor == "amd"
    assert sample.name == "Radeon RX 7900 XTX"
    assert (sample.memory_used_bytes, sample.memory_total_bytes) == (5 * GIB, 24 * GIB)
    assert sample.unified_memory is False
    assert sample.utilization_percent == 37.0
    assert sample.temperature_c == 54.0
    assert sample.power_watts == 123.0
    assert (sample.bus_id, sample.uuid) == ("0000:03:00.0", "8c8a3f1e2b7d4c60")


def test_an_apu_reports_its_gtt_pool_as_usable_memory(tmp_path: Path):
    apu(tmp_path)

    (sample,) = AmdSysfsReader(drm_root=tmp_path).read()

    assert (sample.memory_used_bytes, sample.memory_total_bytes) == (41 * GIB, 96 * GIB)
    assert sample.unified_memory is True
    assert sample.temperature_c == 71.5
    assert sample.power_watts == 86.25  # from power1_input, as there is no power1_average


def test_values_are_read_again_on_every_read(tmp_path: Path):
    device = discrete_card(tmp_path)
    reader = AmdSysfsReader(drm_root=tmp_path)
    reader.read()

    (device / "mem_info_vram_used").write_text(f"{20 * GIB}\n")
    (device / "gpu_busy_percent").write_text("100\n")

    (sample,) = reader.read()
    assert (sample.memory_used_bytes, sample.utilization_percent) == (20 * GIB, 100.0)


def test_only_amd_cards_count_and_connectors_are_not_cards(tmp_path: Path):
    make_card(tmp_path, 0, vendor="0x10de", files={"mem_info_vram_total": 8 * GIB})  # an NVIDIA card
    (tmp_path / "card0-HDMI-A-1").mkdir()
    apu(tmp_path, 1)
    discrete_card(tmp_path, 2)
    (tmp_path / "card2-DP-1").mkdir()
    (tmp_path / "renderD128").mkdir()

    samples = AmdSysfsReader(drm_root=tmp_path).read()

    assert [(s.index, s.bus_id, s.unified_memory) for s in samples] == [
        (0, "0000:c5:00.0", True),
        (1, "0000:03:00.0", False),
    ]


def test_cards_are_ordered_by_number_not_by_name(tmp_path: Path):
    discrete_card(tmp_path, 10)
    apu(tmp_path, 2)

    samples = AmdSysfsReader(drm_root=tmp_path).read()

    assert [s.unified_memory for s in samples] == [True, False]


def test_an_amd_card_not_driven_by_amdgpu_is_ignored(tmp_path: Path):
    make_card(tmp_path, 0)  # legacy radeon driver: no mem_info_* files

    with pytest.raises(GpuUnavailableError):
        AmdSysfsReader(drm_root=tmp_path)


def test_no_drm_tree_means_unavailable(tmp_path: Path):
    with pytest.raises(GpuUnavailableError):
        AmdSysfsReader(drm_root=tmp_path / "missing")


def test_missing_sensors_give_none_not_errors(tmp_path: Path):
    make_card(tmp_path, 0, files={"mem_info_vram_total": 16 * GIB, "mem_info_vram_used": GIB})

    (sample,) = AmdSysfsReader(drm_root=tmp_path).read()

    assert (sample.utilization_percent, sample.temperature_c, sample.power_watts) == (None, None, None)
    assert (sample.memory_used_bytes, sample.memory_total_bytes) == (GIB, 16 * GIB)


def test_without_a_product_name_the_pci_id_database_names_the_card(tmp_path: Path):
    make_card(tmp_path, 0, files={"mem_info_vram_total": 16 * GIB, "mem_info_vram_used": GIB})
    pci_ids = tmp_path / "pci.ids"
    pci_ids.write_text(
        "# comment\n"
        "10de  NVIDIA Corporation\n"
        "\t744c  Not this one\n"
        "1002  Advanced Micro Devices, Inc. [AMD/ATI]\n"
        "\t73bf  Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]\n"
        "\t744c  Navi 31 [Radeon RX 7900 XT/7900 XTX/7900 GRE/7900M]\n"
        "\t\t1002 0e3b  Radeon RX 7900 XTX\n"
        "1022  Advanced Micro Devices, Inc. [AMD]\n"
    )

    (named,) = AmdSysfsReader(drm_root=tmp_path, pci_ids_paths=(pci_ids,)).read()
    (unnamed,) = AmdSysfsReader(drm_root=tmp_path, pci_ids_paths=(tmp_path / "none",)).read()

    assert named.name == "Navi 31 [Radeon RX 7900 XT/7900 XTX/7900 GRE/7900M]"
    assert unnamed.name == "AMD GPU 0x744c"


def test_a_card_whose_memory_vanishes_is_left_out_and_no_card_at_all_is_a_read_error(tmp_path: Path):
    first = discrete_card(tmp_path, 0)
    second = apu(tmp_path, 1)
    reader = AmdSysfsReader(drm_root=tmp_path)

    (first / "mem_info_vram_used").unlink()
    assert [s.index for s in reader.read()] == [1]

    (second / "mem_info_vram_used").unlink()
    with pytest.raises(GpuReadError):
        reader.read()


@pytest.mark.parametrize(
    ("vram_total", "gtt_total", "expect_gtt"),
    [
        (512 * MIB, 96 * GIB, True),  # APU with the usual small carve-out
        (96 * GIB, 16 * GIB, False),  # APU whose firmware carve-out was set large: VRAM is what it uses
        (24 * GIB, 32 * GIB, False),  # discrete card
        (1 * GIB, 1536 * MIB, False),  # tiny discrete card on a small machine: GTT not beyond the 2 GiB line
    ],
)
def test_usable_memory_picks_gtt_only_for_a_small_carve_out(vram_total: int, gtt_total: int, expect_gtt: bool):
    used, total, unified = usable_memory(1, vram_total, 2, gtt_total)

    assert (total == gtt_total, unified, used == 2) == (expect_gtt, expect_gtt, expect_gtt)


def test_usable_memory_without_gtt_figures_is_vram():
    assert usable_memory(1, 512 * MIB, None, None) == (1, 512 * MIB, False)


class FakeAmdSmiException(Exception):
    pass


class NoNvidiaDriver:
    """pynvml on a machine without the NVIDIA driver: nvmlInit fails."""

    class NVMLError(Exception):
        pass

    def nvmlInit(self) -> None:
        raise self.NVMLError("NVML Shared Library Not Found")


class MemoryType(IntEnum):
    VRAM = 0
    VIS_VRAM = 1
    GTT = 2


class TemperatureType(IntEnum):
    EDGE = 0
    HOTSPOT = 1


class TemperatureMetric(IntEnum):
    CURRENT = 0


class FakeAmdSmi:
    """The subset of the amdsmi module the reader uses; devices are dicts of what each query answers.

    A value that is an exception instance is raised instead of returned.
    """

    AmdSmiException = FakeAmdSmiException
    AmdSmiMemoryType = MemoryType
    AmdSmiTemperatureType = TemperatureType
    AmdSmiTemperatureMetric = TemperatureMetric

    def __init__(self, devices: list[dict[str, Any]], init_error: Exception | None = None):
        self.devices = devices
        self.init_error = init_error
        self.shutdowns = 0

    def _answer(self, handle: int, key: Any) -> Any:
        value = self.devices[handle][key]
        if isinstance(value, Exception):
            raise value
        return value

    def amdsmi_init(self) -> None:
        if self.init_error is not None:
            raise self.init_error

    def amdsmi_shut_down(self) -> None:
        self.shutdowns += 1

    def amdsmi_get_processor_handles(self) -> list[int]:
        return list(range(len(self.devices)))

    def amdsmi_get_gpu_asic_info(self, handle: int) -> dict[str, Any]:
        return {"market_name": self._answer(handle, "name"), "vendor_id": "0x1002"}

    def amdsmi_get_gpu_device_uuid(self, handle: int) -> str:
        return self._answer(handle, "uuid")

    def amdsmi_get_gpu_device_bdf(self, handle: int) -> str:
        return self._answer(handle, "bdf")

    def amdsmi_get_gpu_memory_total(self, handle: int, kind: MemoryType) -> int:
        return self._answer(handle, ("total", kind))

    def amdsmi_get_gpu_memory_usage(self, handle: int, kind: MemoryType) -> int:
        return self._answer(handle, ("used", kind))

    def amdsmi_get_gpu_activity(self, handle: int) -> dict[str, Any]:
        return {"gfx_activity": self._answer(handle, "gfx"), "umc_activity": "N/A", "mm_activity": "N/A"}

    def amdsmi_get_temp_metric(self, handle: int, sensor: TemperatureType, metric: TemperatureMetric) -> int:
        assert metric is TemperatureMetric.CURRENT
        return self._answer(handle, ("temp", sensor))

    def amdsmi_get_power_info(self, handle: int) -> dict[str, Any]:
        return self._answer(handle, "power")


def mi300x() -> dict[str, Any]:
    """An Instinct MI300X: no edge sensor, current socket power unsupported (N/A), average available."""
    return {
        "name": "AMD Instinct MI300X",
        "uuid": "ab00-74a1",
        "bdf": "0000:0c:00.0",
        ("total", MemoryType.VRAM): 192 * GIB,
        ("used", MemoryType.VRAM): 150 * GIB,
        ("total", MemoryType.GTT): 128 * GIB,
        ("used", MemoryType.GTT): 0,
        "gfx": 93,
        ("temp", TemperatureType.EDGE): FakeAmdSmiException("AMDSMI_STATUS_NOT_SUPPORTED"),
        ("temp", TemperatureType.HOTSPOT): 68,
        "power": {"current_socket_power": "N/A", "average_socket_power": 612, "power_limit": 750},
    }


def strix_halo() -> dict[str, Any]:
    return {
        "name": "AMD Radeon 8060S",
        "uuid": "N/A-uuid",
        "bdf": "0000:c5:00.0",
        ("total", MemoryType.VRAM): 512 * MIB,
        ("used", MemoryType.VRAM): 200 * MIB,
        ("total", MemoryType.GTT): 110 * GIB,
        ("used", MemoryType.GTT): 60 * GIB,
        "gfx": "N/A",
        ("temp", TemperatureType.EDGE): 55,
        ("temp", TemperatureType.HOTSPOT): 60,
        "power": {"current_socket_power": 97, "average_socket_power": 90},
    }


def test_amd_smi_reads_memory_activity_temperature_and_power():
    mi300, halo = AmdSmiReader(amdsmi=FakeAmdSmi([mi300x(), strix_halo()])).read()

    assert (mi300.name, mi300.index, mi300.bus_id) == ("AMD Instinct MI300X", 0, "0000:0c:00.0")
    assert (mi300.memory_used_bytes, mi300.memory_total_bytes, mi300.unified_memory) == (150 * GIB, 192 * GIB, False)
    assert mi300.utilization_percent == 93.0
    assert mi300.temperature_c == 68.0  # hotspot, as there is no edge sensor
    assert mi300.power_watts == 612.0  # average, as current is N/A

    assert (halo.memory_used_bytes, halo.memory_total_bytes, halo.unified_memory) == (60 * GIB, 110 * GIB, True)
    assert halo.utilization_percent is None  # "N/A"
    assert (halo.temperature_c, halo.power_watts) == (55.0, 97.0)


def test_amd_smi_that_does_not_initialise_is_unavailable():
    with pytest.raises(GpuUnavailableError):
        AmdSmiReader(amdsmi=FakeAmdSmi([mi300x()], init_error=FakeAmdSmiException("AMDSMI_STATUS_INIT_ERROR")))


def test_amd_smi_without_gpus_is_unavailable_and_shut_down():
    smi = FakeAmdSmi([])
    with pytest.raises(GpuUnavailableError):
        AmdSmiReader(amdsmi=smi)
    assert smi.shutdowns == 1


def test_amd_smi_close_shuts_the_library_down_once():
    smi = FakeAmdSmi([mi300x()])
    reader = AmdSmiReader(amdsmi=smi)
    reader.close()
    reader.close()
    assert smi.shutdowns == 1


def test_amd_smi_device_whose_memory_fails_is_left_out():
    broken = mi300x() | {("used", MemoryType.VRAM): FakeAmdSmiException("AMDSMI_STATUS_DRM_ERROR")}

    samples = AmdSmiReader(amdsmi=FakeAmdSmi([broken, strix_halo()])).read()

    assert [s.name for s in samples] == ["AMD Radeon 8060S"]


def test_detection_prefers_amd_smi_over_sysfs(tmp_path: Path):
    discrete_card(tmp_path)

    readers = detect_readers(platform="linux", nvml=NoNvidiaDriver(), amdsmi=FakeAmdSmi([mi300x()]), drm_root=tmp_path)

    assert [reader.name for reader in readers] == ["amdsmi"]


def test_detection_falls_back_to_sysfs_when_amd_smi_is_missing(tmp_path: Path):
    apu(tmp_path)
    no_rocm = FakeAmdSmi([], init_error=FakeAmdSmiException("libamd_smi.so not found"))

    readers = detect_readers(platform="linux", nvml=NoNvidiaDriver(), amdsmi=no_rocm, drm_root=tmp_path)

    assert [reader.name for reader in readers] == ["amd-sysfs"]
    assert readers[0].read()[0].unified_memory is True
