"""Local model server processes: start, health-check, stop, capture output."""

from core.upstream.process import ModelProcess, ProcessState, UpstreamStartError

__all__ = ["ModelProcess", "ProcessState", "UpstreamStartError"]
