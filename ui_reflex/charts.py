"""Small charts drawn with SVG and CSS: sparklines, bar histograms and the model timeline.

The geometry is computed here in Python (plain functions, unit-tested) and handed to the browser as strings
and percentages, so charts need no charting library in the frontend bundle and render identically at any
width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import reflex as rx

from ui_reflex.api_client import ModelEvent

SPARK_WIDTH = 100.0
SPARK_HEIGHT = 28.0


def sparkline_points(values: Sequence[float | None]) -> str:
    """SVG polyline points for `values` in a 100×28 box (None counts as 0); empty for no values."""
    if not values:
        return ""
    numbers = [float(v or 0.0) for v in values]
    top = max(numbers) or 1.0
    step = SPARK_WIDTH / max(len(numbers) - 1, 1)
    usable = SPARK_HEIGHT - 2.0  # keep the line's stroke inside the box
    points = [f"{i * step:.2f},{SPARK_HEIGHT - 1.0 - usable * v / top:.2f}" for i, v in enumerate(numbers)]
    return " ".join(points)


def sparkline_area(points: str) -> str:
    """The polygon under a sparkline (its points closed along the bottom edge)."""
    if not points:
        return ""
    first_x = points.split(" ", 1)[0].split(",")[0]
    last_x = points.rsplit(" ", 1)[-1].split(",")[0]
    return f"{first_x},{SPARK_HEIGHT} {points} {last_x},{SPARK_HEIGHT}"


@dataclass(frozen=True)
class Bar:
    """One histogram bar: its height in percent of the tallest, and what it stands for."""

    height: float
    error_height: float  # the part of the bar that is errors, percent of the tallest
    label: str


def histogram_bars(counts: Sequence[int], errors: Sequence[int], labels: Sequence[str]) -> list[Bar]:
    top = max(counts, default=0) or 1
    return [
        Bar(height=round(100.0 * c / top, 2), error_height=round(100.0 * e / top, 2), label=label)
        for c, e, label in zip(counts, errors, labels, strict=True)
    ]


@dataclass(frozen=True)
class TimelineSegment:
    """A stretch of time a model spent in one state, as left offset and width in percent of the window."""

    left: float
    width: float
    state: str
    label: str


RUNNING_STATES = ("starting", "ready")
MIN_SEGMENT = 0.6
"""Percent: the narrowest segment drawn, so a load seconds ago still shows at the right edge."""


def timeline_segments(
    history: Sequence[ModelEvent], since: datetime, until: datetime, current_state: str
) -> list[TimelineSegment]:
    """Where a model was starting or ready within [since, until), from its state changes (any order).

    The state before the first event in the window is the `previous` of that event (or, with no event at all,
    the model's current state); the last state lasts until `until`.
    """
    span = (until - since).total_seconds()
    if span <= 0:
        return []
    events = sorted(history, key=lambda e: e.at)
    before = [e for e in events if e.at < since]
    inside = [e for e in events if since <= e.at < until]
    if before:
        state = before[-1].state
    elif inside:
        state = inside[0].previous or "stopped"
    else:
        state = current_state
    segments: list[TimelineSegment] = []
    start = since
    for event in [*inside, None]:
        end = event.at if event is not None else until
        if state in RUNNING_STATES and end > start:
            width = max((end - start).total_seconds() / span * 100.0, MIN_SEGMENT)  # a blip stays visible
            left = min((start - since).total_seconds() / span * 100.0, 100.0 - width)
            segments.append(TimelineSegment(round(left, 3), round(width, 3), state, state))
        if event is not None:
            state, start = event.state, event.at
    return segments


# --------------------------------------------------------------------------- components


def sparkline(points: rx.Var[str], area: rx.Var[str], color: str = "accent") -> rx.Component:
    return rx.el.svg(
        rx.el.svg.polygon(points=area, fill=rx.color(color, 4), stroke="none"),
        rx.el.svg.polyline(
            points=points,
            fill="none",
            stroke=rx.color(color, 9),
            stroke_width="1.5",
            vector_effect="non-scaling-stroke",
            stroke_linejoin="round",
        ),
        view_box=f"0 0 {SPARK_WIDTH:g} {SPARK_HEIGHT:g}",
        preserve_aspect_ratio="none",
        width="100%",
        height="32px",
        aria_hidden="true",
        display="block",
    )


def bar_histogram(bars: rx.Var[list[Bar]], height: str = "96px") -> rx.Component:
    """Bars growing from the bottom, errors stacked in red at their foot; hover shows each bar's label."""

    def bar(item: rx.Var[Bar]) -> rx.Component:
        return rx.box(
            rx.box(height=item.error_height.to_string() + "%", background=rx.color("red", 9), width="100%"),
            height=item.height.to_string() + "%",
            min_height="1px",
            flex="1",
            display="flex",
            flex_direction="column",
            justify_content="flex-end",
            background=rx.color("accent", 8),
            border_radius="2px 2px 0 0",
            title=item.label,
        )

    return rx.hstack(
        rx.foreach(bars, bar),
        align="end",
        spacing="1",
        height=height,
        width="100%",
        padding_top="4px",
        border_bottom=f"1px solid {rx.color('gray', 6)}",
        data_chart="histogram",
    )
