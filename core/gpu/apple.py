"""Apple Silicon GPUs, from macOS's own command-line tools (no extra package).

* ``system_profiler SPDisplaysDataType -json`` names the GPU (``sppci_model``, e.g.
  "Apple M2 Max") and gives its core count (``sppci_cores``). It is slow (about a
  second), so it runs once, when the reader is built.
* ``sysctl -n hw.memsize`` is the unified memory size in bytes: the GPU and CPU
  share it, so it is the GPU's memory total. Also read once.
* ``ioreg -r -c IOGPU -d 1`` is read on every poll: the accelerator's
  ``PerformanceStatistics`` carry ``"Device Utilization %"`` and
  ``"In use system memory"`` (bytes of unified memory the GPU holds now).

Temperature and power need ``powermetrics`` with root and stay ``None``.
The command runner is injectable, so tests feed recorded output.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.gpu.sample import GpuReadError, GpuSample, GpuUnavailableError

CommandRunner = Callable[[Sequence[str]], str]
"""Runs a command and returns its standard output; raises (OSError, CalledProcessError, ...) on failure."""

SYSTEM_PROFILER = ("system_profiler", "SPDisplaysDataType", "-json")
SYSCTL_MEMSIZE = ("sysctl", "-n", "hw.memsize")
IOREG_GPU = ("ioreg", "-r", "-c", "IOGPU", "-d", "1")

_UTILIZATION = re.compile(r'"Device Utilization %"\s*=\s*(\d+)')
_IN_USE_MEMORY = re.compile(r'"In use system memory"\s*=\s*(\d+)')


def run_command(command: Sequence[str], timeout: float = 15.0) -> str:
    return subprocess.run(list(command), capture_output=True, text=True, check=True, timeout=timeout).stdout


@dataclass(frozen=True, slots=True)
class AppleGpu:
    name: str
    core_count: int | None


def parse_system_profiler(output: str) -> list[AppleGpu]:
    """The Apple-made GPUs in ``system_profiler SPDisplaysDataType -json`` output.

    Other GPUs in the list (an AMD card in an Intel Mac, an eGPU) are not Apple
    Silicon and are left out.
    """
    gpus = []
    for entry in json.loads(output).get("SPDisplaysDataType", []):
        if not isinstance(entry, dict):
            continue
        model = str(entry.get("sppci_model") or entry.get("_name") or "")
        vendor = str(entry.get("spdisplays_vendor", ""))
        if "apple" not in vendor.lower() and not model.startswith("Apple"):
            continue
        cores = re.match(r"\s*(\d+)", str(entry.get("sppci_cores", "")))
        gpus.append(AppleGpu(name=model or "Apple GPU", core_count=int(cores.group(1)) if cores else None))
    return gpus


def parse_ioreg(output: str) -> tuple[float | None, int | None]:
    """(utilisation %, bytes in use) from ``ioreg -r -c IOGPU`` output; None where absent."""
    utilization = _UTILIZATION.search(output)
    in_use = _IN_USE_MEMORY.search(output)
    return (
        float(utilization.group(1)) if utilization else None,
        int(in_use.group(1)) if in_use else None,
    )


class AppleSiliconReader:
    """Reads the integrated GPU of an Apple Silicon Mac.

    Raises :class:`GpuUnavailableError` when the tools fail or report no Apple GPU.
    """

    name = "apple"

    def __init__(self, run: CommandRunner = run_command):
        self._run = run
        try:
            gpus = parse_system_profiler(run(SYSTEM_PROFILER))
            memory_total = int(run(SYSCTL_MEMSIZE).strip())
        except (OSError, subprocess.SubprocessError, ValueError) as exc:  # JSONDecodeError is a ValueError
            raise GpuUnavailableError(f"macOS did not describe its GPU: {exc}") from exc
        if not gpus:
            raise GpuUnavailableError("system_profiler lists no Apple GPU")
        self._gpu = gpus[0]  # an Apple Silicon Mac has exactly one GPU
        self._memory_total = memory_total

    def read(self) -> list[GpuSample]:
        try:
            utilization, in_use = parse_ioreg(self._run(IOREG_GPU))
        except (OSError, subprocess.SubprocessError) as exc:
            raise GpuReadError(f"ioreg failed: {exc}") from exc
        if in_use is None:
            raise GpuReadError("ioreg reported no GPU memory in use")
        return [
            GpuSample(
                index=0,
                name=self._gpu.name,
                vendor="apple",
                memory_used_bytes=in_use,
                memory_total_bytes=self._memory_total,
                utilization_percent=utilization,
                unified_memory=True,
                core_count=self._gpu.core_count,
            )
        ]

    def close(self) -> None:
        """Nothing to release: every read runs its own command."""
