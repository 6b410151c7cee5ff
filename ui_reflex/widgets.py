"""Small building blocks shared by the pages (plain functions returning components)."""

from __future__ import annotations

import reflex as rx


def stat_tile(
    label: str, value: rx.Var | str, hint: rx.Var | str = "", *, alert: rx.Var | bool = False
) -> rx.Component:
    """A headline number; `alert` turns it red (e.g. errors above zero)."""
    return rx.card(
        rx.vstack(
            rx.text(label, size="2", color=rx.color("gray", 11), weight="medium"),
            rx.text(value, size="7", weight="bold", color=rx.cond(alert, rx.color("red", 11), rx.color("gray", 12))),
            rx.text(hint, size="1", color=rx.color("gray", 10)),
            spacing="1",
        ),
        width="100%",
        data_stat=label.lower(),
    )


def status_badge(status_code: rx.Var, ok: rx.Var) -> rx.Component:
    return rx.badge(status_code, color_scheme=rx.cond(ok, "green", "red"), variant="soft")


def live_badge(status: rx.Var[str]) -> rx.Component:
    """Shows whether the page is following the event stream, polling, or cut off from the server."""
    return rx.badge(
        rx.hstack(
            rx.box(
                width="8px",
                height="8px",
                border_radius="50%",
                background=rx.match(
                    status, ("live", rx.color("green", 9)), ("polling", rx.color("amber", 9)), rx.color("gray", 8)
                ),
            ),
            rx.text(rx.match(status, ("live", "live"), ("polling", "polling"), ("offline", "offline"), "connecting")),
            align="center",
            spacing="1",
        ),
        variant="surface",
        color_scheme=rx.match(status, ("live", "green"), ("polling", "amber"), ("offline", "red"), "gray"),
        data_live=status,
    )


def local_time(iso: rx.Var[str], fmt: str = "HH:mm:ss") -> rx.Component:
    """A UTC ISO timestamp shown in the browser's time zone."""
    return rx.moment(iso, format=fmt, title=iso)


def error_callout(message: rx.Var[str]) -> rx.Component:
    return rx.cond(
        message != "",
        rx.callout(message, icon="triangle-alert", color_scheme="red", role="alert", width="100%"),
    )


def empty_state(text: str, icon: str = "inbox") -> rx.Component:
    return rx.center(
        rx.vstack(
            rx.icon(icon, size=28, color=rx.color("gray", 9)), rx.text(text, color=rx.color("gray", 10)), align="center"
        ),
        padding="32px",
        width="100%",
    )


def field_row(label: str, value: rx.Var | str | rx.Component) -> rx.Component:
    """A label/value pair in detail views."""
    return rx.hstack(
        rx.text(label, size="2", color=rx.color("gray", 11), min_width="140px"),
        value if isinstance(value, rx.Component) else rx.text(value, size="2", word_break="break-all"),
        align="start",
        width="100%",
        spacing="3",
    )


def code_view(
    code: rx.Var | str, language: rx.Var | str, *, font_size: str = "12px", wrap_long_lines: bool | None = None,
    **box_props: object,
) -> rx.Component:  # fmt: skip
    """Highlighted code that scrolls sideways inside its card instead of widening the page."""
    block_props = {} if wrap_long_lines is None else {"wrap_long_lines": wrap_long_lines}
    return rx.box(
        rx.code_block(code, language=language, font_size=font_size, margin="0", **block_props),
        width="100%",
        overflow_x="auto",
        **box_props,
    )
