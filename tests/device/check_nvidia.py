"""Run the real NVIDIA reader on a GPU machine and print what it read, as JSON.

Usage (from the repository root): ``python tests/device/check_nvidia.py``

It builds :class:`core.gpu.NvidiaReader` against the real ``pynvml``, reads twice a
second apart (timing each read), runs detection and one poll through
:class:`core.gpu.GpuPoller`, and, where ``nvidia-smi`` is installed, prints its view
of the same fields so the two can be compared by eye. Exit status 1 when NVML is
not usable here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core.gpu import GpuPoller, GpuUnavailableError, NvidiaReader, detect_readers

NVIDIA_SMI_FIELDS = "index,name,uuid,pci.bus_id,memory.used,memory.total,utilization.gpu,temperature.gpu,power.draw"


def nvidia_smi() -> list[str] | str:
    if shutil.which("nvidia-smi") is None:
        return "nvidia-smi not installed"
    command = ["nvidia-smi", f"--query-gpu={NVIDIA_SMI_FIELDS}", "--format=csv,noheader,nounits"]
    try:
        return subprocess.run(command, capture_output=True, text=True, check=True, timeout=30).stdout.splitlines()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"nvidia-smi failed: {exc}"


async def one_poll() -> dict:
    received = []
    poller = GpuPoller(detect_readers(), interval=60, on_sample=received.append)
    started = time.perf_counter()
    await poller.poll_once()
    elapsed_ms = (time.perf_counter() - started) * 1000
    await poller.stop()
    return {
        "readers": [reader.name for reader in poller.readers],
        "poll_ms": round(elapsed_ms, 2),
        "callback_samples": [dataclasses.asdict(s) for batch in received for s in batch],
    }


def main() -> int:
    report: dict = {}
    try:
        started = time.perf_counter()
        reader = NvidiaReader()
        report["init_ms"] = round((time.perf_counter() - started) * 1000, 2)
    except GpuUnavailableError as exc:
        print(json.dumps({"error": str(exc), "nvidia_smi": nvidia_smi()}, indent=2))
        return 1
    try:
        import pynvml

        report["driver_version"] = str(pynvml.nvmlSystemGetDriverVersion())
        reads = []
        for attempt in range(2):
            if attempt:
                time.sleep(1)
            started = time.perf_counter()
            samples = reader.read()
            reads.append(
                {
                    "read_ms": round((time.perf_counter() - started) * 1000, 2),
                    "samples": [dataclasses.asdict(sample) for sample in samples],
                }
            )
        report["reads"] = reads
    finally:
        reader.close()
    report["nvidia_smi"] = nvidia_smi()
    report["detect_and_poll"] = asyncio.run(one_poll())
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
