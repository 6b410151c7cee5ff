"""The Apple Silicon reader with macOS's tool output fed through an injected command runner.

The fixtures follow the layout ``system_profiler SPDisplaysDataType -json`` and
``ioreg -r -c IOGPU -d 1`` print on macOS 14.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from core.gpu import AppleSiliconReader, GpuReadError, GpuSample, GpuUnavailableError, detect_readers

FIXTURES = Path(__file__).parent / "fixtures" / "gpu"
MEMSIZE_32_GIB = "34359738368\n"


class RecordedMac:
    """Answers commands with recorded output; a missing answer is a failing command."""

    def __init__(self, answers: dict[str, str | Exception]):
        self.answers = answers
        self.commands: list[tuple[str, ...]] = []

    def __call__(self, command: Sequence[str]) -> str:
        self.commands.append(tuple(command))
        answer = self.answers.get(command[0], FileNotFoundError(command[0]))
        if isinstance(answer, Exception):
            raise answer
        return answer


def m1_pro(**overrides: str | Exception) -> RecordedMac:
    answers: dict[str, str | Exception] = {
        "system_profiler": (FIXTURES / "system_profiler_m1_pro.json").read_text(),
        "sysctl": MEMSIZE_32_GIB,
        "ioreg": (FIXTURES / "ioreg_m1_pro.txt").read_text(),
    }
    return RecordedMac(answers | overrides)


def test_an_m1_pro_reports_its_cores_unified_memory_and_gpu_use():
    (sample,) = AppleSiliconReader(run=m1_pro()).read()

    assert sample == GpuSample(
        index=0,
        name="Apple M1 Pro",
        vendor="apple",
        memory_used_bytes=7688503296,
        memory_total_bytes=34359738368,
        utilization_percent=41.0,
        temperature_c=None,
        power_watts=None,
        unified_memory=True,
        core_count=16,
    )


def test_the_slow_system_profiler_runs_once_and_ioreg_on_every_read():
    mac = m1_pro()
    reader = AppleSiliconReader(run=mac)
    reader.read()
    reader.read()

    assert [command[0] for command in mac.commands] == ["system_profiler", "sysctl", "ioreg", "ioreg"]
    assert mac.commands[0] == ("system_profiler", "SPDisplaysDataType", "-json")
    assert mac.commands[1] == ("sysctl", "-n", "hw.memsize")


def test_an_intel_mac_has_no_apple_silicon_gpu():
    mac = m1_pro(system_profiler=(FIXTURES / "system_profiler_intel_mac.json").read_text())

    with pytest.raises(GpuUnavailableError):
        AppleSiliconReader(run=mac)


@pytest.mark.parametrize(
    "failure",
    [
        {"system_profiler": subprocess.CalledProcessError(1, "system_profiler")},
        {"system_profiler": "not json"},
        {"sysctl": subprocess.TimeoutExpired("sysctl", 15)},
        {"sysctl": "hw.memsize: unknown\n"},
    ],
)
def test_tools_that_fail_make_the_reader_unavailable(failure: dict[str, str | Exception]):
    with pytest.raises(GpuUnavailableError):
        AppleSiliconReader(run=m1_pro(**failure))


def test_a_failing_ioreg_fails_the_read_not_the_reader():
    mac = m1_pro()
    reader = AppleSiliconReader(run=mac)

    mac.answers["ioreg"] = subprocess.CalledProcessError(1, "ioreg")
    with pytest.raises(GpuReadError):
        reader.read()

    mac.answers["ioreg"] = '"PerformanceStatistics" = {"Device Utilization %"=3}'
    with pytest.raises(GpuReadError):
        reader.read()  # no memory figure: the sample would be a guess

    mac.answers["ioreg"] = '"PerformanceStatistics" = {"In use system memory"=1024}'
    (sample,) = reader.read()
    assert (sample.memory_used_bytes, sample.utilization_percent) == (1024, None)


def test_apple_silicon_is_only_tried_on_macos():
    mac = m1_pro()
    no_nvidia, no_rocm = _NoNvml(), _NoAmdSmi()

    on_linux = detect_readers(platform="linux", nvml=no_nvidia, amdsmi=no_rocm, drm_root=Path("/nonexistent"), run=mac)
    assert on_linux == [] and mac.commands == []

    on_mac = detect_readers(platform="darwin", nvml=no_nvidia, amdsmi=no_rocm, drm_root=Path("/nonexistent"), run=mac)
    assert [reader.name for reader in on_mac] == ["apple"]


class _NoNvml:
    class NVMLError(Exception):
        pass

    def nvmlInit(self) -> None:
        raise self.NVMLError("NVML Shared Library Not Found")


class _NoAmdSmi:
    class AmdSmiException(Exception):
        pass

    def amdsmi_init(self) -> None:
        raise self.AmdSmiException("libamd_smi.so not found")
