"""Reading numbers out of decoded JSON that other programs wrote: bools are not numbers, 3.0 is an int."""

from __future__ import annotations

from typing import Any


def as_int(value: Any) -> int | None:
    """An integer, or a float with an integral value; None for anything else (bools included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def as_float(value: Any) -> float | None:
    """Any number as a float; None for anything else (bools included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
