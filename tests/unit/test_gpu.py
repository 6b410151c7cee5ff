"""GPU detection on a machine without GPUs, and the background poller."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from pathlib import Path

import pytest

from core.gpu import GpuPoller, GpuReader, GpuReadError, GpuSample, detect_readers

GIB = 1024**3


def _machine_has_a_gpu_driver() -> bool:
    amd_cards = [
        vendor for vendor in Path("/sys/class/drm").glob("card*/device/vendor") if "0x1002" in vendor.read_text()
    ]
    return Path("/dev/nvidiactl").exists() or bool(amd_cards) or sys.platform == "darwin"


@pytest.mark.skipif(_machine_has_a_gpu_driver(), reason="this machine has a GPU driver")
def test_a_machine_without_gpus_gets_no_readers_and_no_error():
    assert detect_readers() == []


def test_every_reader_detected_on_this_machine_can_read():
    readers = detect_readers()
    try:
        for reader in readers:
            assert all(isinstance(sample, GpuSample) for sample in reader.read())
    finally:
        for reader in readers:
            reader.close()


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


def test_no_driver_no_rocm_no_sysfs_and_no_mac_is_an_empty_list(tmp_path: Path):
    def no_macos_tools(command):
        raise FileNotFoundError(command[0])

    for platform in ("linux", "darwin", "win32"):
        assert (
            detect_readers(platform=platform, nvml=_NoNvml(), amdsmi=_NoAmdSmi(), drm_root=tmp_path, run=no_macos_tools)
            == []
        )


def sample(index: int, used: int) -> GpuSample:
    return GpuSample(index, f"GPU {index}", "nvidia", used, 24 * GIB, 50.0, 60.0, 200.0)


class ScriptedReader:
    """Returns a new sample per read (memory used counts reads) and records the thread it ran on."""

    def __init__(self, name: str = "scripted", fail: bool = False):
        self.name = name
        self.fail = fail
        self.reads = 0
        self.threads: set[int] = set()
        self.closed = 0

    def read(self) -> list[GpuSample]:
        self.threads.add(threading.get_ident())
        self.reads += 1
        if self.fail:
            raise GpuReadError("driver went away")
        return [sample(0, self.reads * GIB)]

    def close(self) -> None:
        self.closed += 1


def test_readers_satisfy_the_reader_protocol():
    assert isinstance(ScriptedReader(), GpuReader)


async def test_the_poller_reads_at_once_then_every_interval_caches_and_calls_back():
    reader = ScriptedReader()
    received: list[list[GpuSample]] = []
    three_polls = asyncio.Event()

    def on_sample(samples: list[GpuSample]) -> None:
        received.append(samples)
        if len(received) == 3:
            three_polls.set()

    poller = GpuPoller([reader], interval=0.02, on_sample=on_sample)
    assert poller.latest() == [] and poller.sampled_at is None

    poller.start()
    await asyncio.wait_for(three_polls.wait(), 2)
    await poller.stop()

    assert [batch[0].memory_used_bytes for batch in received[:3]] == [GIB, 2 * GIB, 3 * GIB]
    assert poller.latest() == received[-1]
    assert poller.sampled_at is not None
    assert not poller.running


async def test_reads_run_in_a_worker_thread_not_on_the_event_loop():
    reader = ScriptedReader()
    poller = GpuPoller([reader])

    await poller.poll_once()

    assert reader.threads and threading.get_ident() not in reader.threads


async def test_a_slow_driver_does_not_block_the_event_loop():
    release = threading.Event()

    class SlowReader(ScriptedReader):
        def read(self) -> list[GpuSample]:
            release.wait(2)
            return super().read()

    poller = GpuPoller([SlowReader()])
    poll = asyncio.create_task(poller.poll_once())
    await asyncio.sleep(0.05)  # the loop keeps running while the read is blocked
    assert not poll.done()
    release.set()
    assert len(await poll) == 1


async def test_stop_closes_the_readers_once_and_polling_ends():
    reader = ScriptedReader()
    poller = GpuPoller([reader], interval=0.01)
    poller.start()
    await asyncio.sleep(0.05)

    await poller.stop()
    reads_at_stop = reader.reads
    await asyncio.sleep(0.05)

    assert reader.closed == 1
    assert reader.reads == reads_at_stop


async def test_stop_waits_for_a_read_in_progress_before_closing():
    started, release = threading.Event(), threading.Event()
    events: list[str] = []

    class BlockingReader(ScriptedReader):
        def read(self) -> list[GpuSample]:
            started.set()
            release.wait(2)
            events.append("read finished")
            return super().read()

        def close(self) -> None:
            events.append("closed")

    poller = GpuPoller([BlockingReader()], interval=10)
    poller.start()
    await asyncio.to_thread(started.wait, 2)
    stopping = asyncio.create_task(poller.stop())
    await asyncio.sleep(0.05)
    release.set()
    await stopping

    assert events == ["read finished", "closed"]


async def test_a_hung_driver_does_not_hang_stop_and_its_reader_is_not_closed_under_it():
    started, release = threading.Event(), threading.Event()

    class HungReader(ScriptedReader):
        def read(self) -> list[GpuSample]:
            started.set()
            release.wait(5)
            return super().read()

    reader = HungReader()
    poller = GpuPoller([reader], interval=10, stop_timeout=0.05)
    poller.start()
    await asyncio.to_thread(started.wait, 2)

    await asyncio.wait_for(poller.stop(), 1)

    assert reader.closed == 0
    release.set()  # let the worker thread end


async def test_a_failing_reader_is_left_out_and_the_others_still_report():
    broken, working = ScriptedReader("broken", fail=True), ScriptedReader("working")
    poller = GpuPoller([broken, working])

    samples = await poller.poll_once()

    assert [s.memory_used_bytes for s in samples] == [GIB]
    broken.fail = False
    assert len(await poller.poll_once()) == 2


async def test_a_failing_reader_is_logged_once_until_it_recovers(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="core.gpu.poller")
    broken = ScriptedReader("broken", fail=True)
    poller = GpuPoller([broken])

    for _ in range(3):
        await poller.poll_once()
    broken.fail = False
    await poller.poll_once()

    messages = [record.getMessage() for record in caplog.records if record.name == "core.gpu.poller"]
    assert sum("failed" in message for message in messages) == 1
    assert sum("recovered" in message for message in messages) == 1


async def test_a_callback_that_raises_does_not_stop_polling():
    calls = 0
    two_calls = asyncio.Event()

    def explode(samples: list[GpuSample]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            two_calls.set()
        raise RuntimeError("subscriber bug")

    poller = GpuPoller([ScriptedReader()], interval=0.01, on_sample=explode)
    poller.start()
    await asyncio.wait_for(two_calls.wait(), 2)
    await poller.stop()

    assert poller.latest()[0].memory_used_bytes >= 2 * GIB


async def test_without_readers_start_does_nothing():
    poller = GpuPoller([], interval=0.01)

    poller.start()

    assert not poller.running and poller.latest() == []
    await poller.stop()


def test_the_interval_must_be_positive():
    with pytest.raises(ValueError):
        GpuPoller([ScriptedReader()], interval=0)
