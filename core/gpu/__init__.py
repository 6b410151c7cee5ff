"""GPU monitoring: one sample shape for NVIDIA, AMD and Apple Silicon, and a poller.

Typical use (in the gateway's lifespan)::

    poller = GpuPoller(detect_readers(), interval=10.0, on_sample=publish)
    poller.start()
    ...
    poller.latest()      # GET /api/gpu
    await poller.stop()  # closes NVML / AMD SMI
"""

from core.gpu.amd import AmdSmiReader, AmdSysfsReader, usable_memory
from core.gpu.apple import AppleSiliconReader, CommandRunner
from core.gpu.detect import detect_readers
from core.gpu.nvidia import NvidiaReader
from core.gpu.poller import GpuPoller, SampleCallback
from core.gpu.sample import GpuReader, GpuReadError, GpuSample, GpuUnavailableError, GpuVendor

__all__ = [
    "AmdSmiReader",
    "AmdSysfsReader",
    "AppleSiliconReader",
    "CommandRunner",
    "GpuPoller",
    "GpuReadError",
    "GpuReader",
    "GpuSample",
    "GpuUnavailableError",
    "GpuVendor",
    "NvidiaReader",
    "SampleCallback",
    "detect_readers",
    "usable_memory",
]
