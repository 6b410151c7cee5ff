"""Find the GPU readers that work on this machine.

Order: NVIDIA (NVML) → AMD (AMD SMI, else the amdgpu sysfs files) → Apple Silicon
(only on macOS). A machine may have both NVIDIA and AMD GPUs, so every vendor that
works is returned; a machine with none gets an empty list. Detection never raises:
a missing driver is the normal case on most machines, not an error.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from core.gpu.amd import AmdSmiReader, AmdSysfsReader
from core.gpu.apple import AppleSiliconReader, CommandRunner, run_command
from core.gpu.nvidia import NvidiaReader
from core.gpu.sample import GpuReader

log = logging.getLogger(__name__)


def detect_readers(
    *,
    platform: str = sys.platform,
    nvml: Any | None = None,
    amdsmi: Any | None = None,
    drm_root: Path = Path("/sys/class/drm"),
    run: CommandRunner = run_command,
) -> list[GpuReader]:
    """The readers that initialise here, NVIDIA first.

    The keyword arguments exist for tests: ``nvml`` and ``amdsmi`` replace the driver
    binding modules (``None`` imports the real ones), ``drm_root`` the sysfs tree,
    ``run`` the macOS command runner and ``platform`` the value of ``sys.platform``.
    """
    readers: list[GpuReader] = []
    nvidia = _try(lambda: NvidiaReader(nvml=nvml))
    if nvidia is not None:
        readers.append(nvidia)
    amd = _try(lambda: AmdSmiReader(amdsmi=amdsmi)) or _try(lambda: AmdSysfsReader(drm_root=drm_root))
    if amd is not None:
        readers.append(amd)
    if platform == "darwin":
        apple = _try(lambda: AppleSiliconReader(run=run))
        if apple is not None:
            readers.append(apple)
    log.info("GPU readers: %s", ", ".join(reader.name for reader in readers) or "none")
    return readers


def _try(build: Any) -> GpuReader | None:
    try:
        return build()
    except Exception as exc:  # noqa: BLE001 - detection must never stop the gateway from starting
        log.debug("GPU reader unavailable: %s", exc)
        return None
