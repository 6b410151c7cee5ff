"""The NVIDIA reader against a fake NVML module (the real pynvml is never touched)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.gpu import GpuReadError, GpuSample, GpuUnavailableError, NvidiaReader, detect_readers

GIB = 1024**3
NOT_SUPPORTED = 3
GPU_IS_LOST = 15


class FakeNvmlError(Exception):
    def __init__(self, value: int):
        super().__init__(f"NVML error {value}")
        self.value = value


@dataclass
class FakeMemory:
    used: int
    total: int


@dataclass
class FakeUtilization:
    gpu: int
    memory: int = 0


@dataclass
class FakePci:
    busId: str


@dataclass
class FakeGpu:
    name: str | bytes
    uuid: str
    bus_id: str
    used: int
    total: int
    utilization: int
    temperature: int
    power_mw: int
    errors: dict[str, int] = field(default_factory=dict)  # NVML function name → error code it raises


class FakeNvml:
    """The subset of the pynvml module the reader uses, with failures on demand."""

    NVMLError = FakeNvmlError
    NVML_ERROR_NOT_SUPPORTED = NOT_SUPPORTED
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, gpus: list[FakeGpu], init_error: int | None = None, handle_errors: frozenset[int] = frozenset()):
        self.gpus = gpus
        self.init_error = init_error
        self.handle_errors = handle_errors
        self.init_calls = 0
        self.shutdown_calls = 0

    def _gpu(self, handle: int, function: str) -> FakeGpu:
        gpu = self.gpus[handle]
        if function in gpu.errors:
            raise FakeNvmlError(gpu.errors[function])
        return gpu

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise FakeNvmlError(self.init_error)
        self.init_calls += 1

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if index in self.handle_errors:
            raise FakeNvmlError(GPU_IS_LOST)
        return index

    def nvmlDeviceGetName(self, handle: int) -> str | bytes:
        return self._gpu(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return self._gpu(handle, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetPciInfo(self, handle: int) -> FakePci:
        return FakePci(self._gpu(handle, "nvmlDeviceGetPciInfo").bus_id)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> FakeMemory:
        gpu = self._gpu(handle, "nvmlDeviceGetMemoryInfo")
        return FakeMemory(gpu.used, gpu.total)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> FakeUtilization:
        return FakeUtilization(self._gpu(handle, "nvmlDeviceGetUtilizationRates").utilization)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._gpu(handle, "nvmlDeviceGetTemperature").temperature

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return self._gpu(handle, "nvmlDeviceGetPowerUsage").power_mw


class NoRocm:
    """amdsmi on a machine without ROCm: amdsmi_init fails."""

    class AmdSmiException(Exception):
        pass

    def amdsmi_init(self) -> None:
        raise self.AmdSmiException("libamd_smi.so not found")


def two_gpus() -> list[FakeGpu]:
    """An RTX 4090 that answers everything and an A100 whose power query fails."""
    return [
        FakeGpu("NVIDIA GeForce RTX 4090", "GPU-aaaa", "00000000:01:00.0", 3 * GIB, 24 * GIB, 87, 64, 312_456),
        FakeGpu(
            "NVIDIA A100-SXM4-80GB",
            "GPU-bbbb",
            "00000000:41:00.0",
            40 * GIB,
            80 * GIB,
            12,
            41,
            0,
            errors={"nvmlDeviceGetPowerUsage": NOT_SUPPORTED},
        ),
    ]


def test_reads_every_field_of_every_gpu_and_converts_milliwatts_to_watts():
    reader = NvidiaReader(nvml=FakeNvml(two_gpus()))

    first, second = reader.read()

    assert first == GpuSample(
        index=0,
        name="NVIDIA GeForce RTX 4090",
        vendor="nvidia",
        memory_used_bytes=3 * GIB,
        memory_total_bytes=24 * GIB,
        utilization_percent=87.0,
        temperature_c=64.0,
        power_watts=312.456,
        unified_memory=False,
        uuid="GPU-aaaa",
        bus_id="00000000:01:00.0",
    )
    assert (second.index, second.name, second.memory_used_bytes, second.memory_total_bytes) == (
        1,
        "NVIDIA A100-SXM4-80GB",
        40 * GIB,
        80 * GIB,
    )


def test_a_field_the_driver_refuses_becomes_none_and_the_rest_of_the_gpu_is_still_read():
    second = NvidiaReader(nvml=FakeNvml(two_gpus())).read()[1]

    assert second.power_watts is None
    assert second.utilization_percent == 12.0
    assert second.temperature_c == 41.0


def test_every_optional_field_can_fail_independently():
    gpu = two_gpus()[0]
    gpu.errors = {name: NOT_SUPPORTED for name in ("nvmlDeviceGetUtilizationRates", "nvmlDeviceGetTemperature")}
    gpu.errors |= {"nvmlDeviceGetUUID": NOT_SUPPORTED, "nvmlDeviceGetPciInfo": NOT_SUPPORTED}

    (sample,) = NvidiaReader(nvml=FakeNvml([gpu])).read()

    assert (sample.utilization_percent, sample.temperature_c, sample.uuid, sample.bus_id) == (None, None, None, None)
    assert sample.power_watts == 312.456


def test_nvml_is_initialised_once_and_shut_down_once_on_close():
    nvml = FakeNvml(two_gpus())
    reader = NvidiaReader(nvml=nvml)
    reader.read()
    reader.read()

    reader.close()
    reader.close()

    assert (nvml.init_calls, nvml.shutdown_calls) == (1, 1)
    with pytest.raises(GpuReadError):
        reader.read()


def test_no_driver_means_unavailable():
    library_not_found = 12
    with pytest.raises(GpuUnavailableError):
        NvidiaReader(nvml=FakeNvml(two_gpus(), init_error=library_not_found))


def test_a_driver_without_devices_means_unavailable_and_releases_nvml():
    nvml = FakeNvml([])
    with pytest.raises(GpuUnavailableError):
        NvidiaReader(nvml=nvml)
    assert nvml.shutdown_calls == 1


def test_a_gpu_without_a_handle_is_left_out_and_the_others_keep_their_index():
    samples = NvidiaReader(nvml=FakeNvml(two_gpus(), handle_errors=frozenset({0}))).read()

    assert [(s.index, s.name) for s in samples] == [(1, "NVIDIA A100-SXM4-80GB")]


def test_a_gpu_whose_memory_cannot_be_read_is_left_out_of_that_read():
    gpus = two_gpus()
    gpus[0].errors = {"nvmlDeviceGetMemoryInfo": GPU_IS_LOST}

    samples = NvidiaReader(nvml=FakeNvml(gpus)).read()

    assert [s.index for s in samples] == [1]


def test_when_no_gpu_can_be_read_the_read_fails_rather_than_reporting_nothing():
    gpus = two_gpus()
    for gpu in gpus:
        gpu.errors = {"nvmlDeviceGetMemoryInfo": GPU_IS_LOST}

    with pytest.raises(GpuReadError):
        NvidiaReader(nvml=FakeNvml(gpus)).read()


def test_a_unified_memory_board_reports_the_system_memory_pool(tmp_path: Path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       127535380 kB\nMemFree:         9000000 kB\nMemAvailable:   100000000 kB\n")
    gb10 = FakeGpu("NVIDIA GB10", "GPU-cccc", "0000000F:01:00.0", 0, 0, 5, 45, 11_000)
    gb10.errors = {"nvmlDeviceGetMemoryInfo": NOT_SUPPORTED}

    (sample,) = NvidiaReader(nvml=FakeNvml([gb10]), meminfo_path=meminfo).read()

    assert sample.unified_memory is True
    assert sample.memory_total_bytes == 127535380 * 1024
    assert sample.memory_used_bytes == (127535380 - 100000000) * 1024


def test_names_from_older_bindings_arrive_as_bytes_and_are_decoded():
    gpu = two_gpus()[0]
    gpu.name = b"Tesla T4"

    (sample,) = NvidiaReader(nvml=FakeNvml([gpu])).read()

    assert sample.name == "Tesla T4"


def test_detection_puts_a_working_nvidia_reader_first(tmp_path: Path):
    readers = detect_readers(platform="linux", nvml=FakeNvml(two_gpus()), amdsmi=NoRocm(), drm_root=tmp_path)

    assert [reader.name for reader in readers] == ["nvml"]
    assert len(readers[0].read()) == 2
