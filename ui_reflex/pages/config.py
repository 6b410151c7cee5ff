"""`/config`: the model config file in an editor. Problems are checked as you type (`POST /api/config/validate`)
and shown at their lines; saving (`PUT /api/config`) writes and hot-reloads only a valid text, and only when
nobody else saved in between (If-Match)."""

from __future__ import annotations

from dataclasses import dataclass

import reflex as rx

from ui_reflex import browser
from ui_reflex.api_client import ApiError, ConfigCheck, ConfigProblem
from ui_reflex.layout import page_shell
from ui_reflex.session import admin_api
from ui_reflex.widgets import error_callout

EDITOR_ID = "config-editor"
LINE_HEIGHT = 20  # px; the gutter and the text area must agree
EDITOR_TEXT = rx.Var(f"document.getElementById({EDITOR_ID!r}).value").to(str)


@dataclass(frozen=True)
class ProblemView:
    line: int  # 0 when the problem has no position
    where: str
    message: str
    severity: str


@dataclass(frozen=True)
class GutterLine:
    number: int
    severity: str  # "" | error | warning
    message: str


def problem_views(problems: list[ConfigProblem]) -> list[ProblemView]:
    out = []
    for p in sorted(problems, key=lambda p: (p.line or 0, p.column or 0)):
        where = f"line {p.line}" + (f", column {p.column}" if p.column else "") if p.line else "whole file"
        if p.path and p.path != "(yaml)":
            where += f" · {p.path}"
        out.append(ProblemView(p.line or 0, where, p.message, p.severity))
    return out


def gutter_lines(line_count: int, problems: list[ConfigProblem]) -> list[GutterLine]:
    """One entry per line of the text; lines with a problem carry its severity and message (errors win)."""
    marks: dict[int, tuple[str, str]] = {}
    for p in problems:
        if not p.line:
            continue
        line = min(p.line, max(line_count, 1))
        current = marks.get(line)
        if current is None or (current[0] != "error" and p.severity == "error"):
            marks[line] = (p.severity, p.message)
    return [GutterLine(n, *marks.get(n, ("", ""))) for n in range(1, max(line_count, 1) + 1)]


def line_count(text: str) -> int:
    return text.count("\n") + (0 if text.endswith("\n") else 1)


class ConfigState(rx.State):
    version: int = 0
    loaded: bool = False  # the editor shows once the file is in: typing into an editor about to reset is lost
    initial_text: str = ""
    gutter: list[GutterLine] = []
    problems: list[ProblemView] = []
    valid: bool = True
    summary: str = ""
    dirty: bool = False
    saving: bool = False
    message: str = ""
    error: str = ""
    load_error: str = ""

    _text: str = ""
    _saved_text: str = ""
    _etag: str = ""

    @rx.event
    async def load(self):
        self.message = self.error = ""
        self.loaded = False
        yield
        await self._read()

    @rx.event
    async def reload(self):
        """Discard the edits: read the file as it is on the server now."""
        self.message = self.error = ""
        await self._read()
        if not self.load_error:
            self.message = "Reloaded from the server."

    @rx.event
    async def edit(self, value: str):
        self._text = value
        self.dirty = value != self._saved_text
        try:
            async with admin_api(self) as api:
                self._show(await api.validate_config(value))
        except ApiError as exc:
            self.error = f"Could not check the text: {exc.message}"

    @rx.event
    async def save(self, text: str):
        """Save `text`, read from the editor at the click (a debounced edit may not have arrived yet)."""
        self._text = text
        self.message = self.error = ""
        self.saving = True
        try:
            async with admin_api(self) as api:
                result = await api.save_config(self._text, if_match=self._etag or None)
                self._show(result)
                if not result.saved:
                    self.error = "Not saved: fix the problems marked in the text first. Nothing was changed."
                    return
                current = await api.config_text()
        except ApiError as exc:
            if exc.status == 412:
                self.error = "Not saved: someone else saved the config since you opened it. Reload to see it."
            else:
                self.error = f"Not saved: {exc.explanation}"
            return
        finally:
            self.saving = False
        self._saved_text, self._etag, self.dirty = self._text, current.etag or "", current.text != self._text
        backup = f" The previous file was kept as {result.backup}." if result.backup else ""
        self.message = f"Saved and reloaded: {result.models} models.{backup}"

    @rx.event
    def go_to_line(self, line: int):
        return browser.call(browser.SELECT_LINE, EDITOR_ID, line)

    async def _read(self) -> None:
        try:
            async with admin_api(self) as api:
                current = await api.config_text()
                check = await api.validate_config(current.text)
        except ApiError as exc:
            self.load_error = f"Could not read the config: {exc.message}"
            return
        self.load_error = ""
        self._text = self._saved_text = self.initial_text = current.text
        self._etag = current.etag or ""
        self.dirty = False
        self.version += 1  # remount the editor with the file's text
        self.loaded = True
        self._show(check)

    def _show(self, check: ConfigCheck) -> None:
        self.valid = check.valid
        self.problems = problem_views(check.problems)
        self.gutter = gutter_lines(line_count(self._text), check.problems)
        errors = sum(1 for p in check.problems if p.severity == "error")
        warnings = len(check.problems) - errors
        if check.valid:
            self.summary = f"Valid: {check.models} models" + (f", {warnings} warnings" if warnings else "")
        else:
            self.summary = f"{errors} error{'s' if errors != 1 else ''}" + (
                f", {warnings} warnings" if warnings else ""
            )


def _gutter_line(line: rx.Var[GutterLine]) -> rx.Component:
    return rx.el.div(
        line.number,
        title=line.message,
        style={
            "height": f"{LINE_HEIGHT}px",
            "padding_right": "8px",
            "text_align": "right",
            "color": rx.cond(line.severity != "", "white", "var(--gray-10)"),
            "background": rx.match(line.severity, ("error", "var(--red-9)"), ("warning", "var(--amber-9)"), "none"),
        },
        data_line=line.number,
        data_severity=line.severity,
    )


def _editor() -> rx.Component:
    s = ConfigState
    mono = {
        "font_family": "ui-monospace, SFMono-Regular, Menlo, monospace",
        "font_size": "13px",
        "line_height": f"{LINE_HEIGHT}px",
    }
    return rx.box(
        rx.hstack(
            rx.el.div(
                rx.foreach(s.gutter, _gutter_line),
                style={**mono, "min_width": "44px", "padding_top": "8px", "user_select": "none"},
            ),
            rx.el.textarea(
                default_value=s.initial_text,
                on_change=ConfigState.edit.debounce(400),
                id=EDITOR_ID,
                spell_check=False,
                wrap="off",
                aria_label="config.yaml",
                style={
                    **mono,
                    "flex": "1",
                    "min_width": "0",
                    "border": "none",
                    "outline": "none",
                    "resize": "none",
                    "padding": "8px",
                    "background": "transparent",
                    "color": "inherit",
                    "white_space": "pre",
                    "overflow_x": "auto",
                    "overflow_y": "hidden",
                    "field_sizing": "content",
                    "min_height": "360px",
                    "tab_size": "2",
                },
                key=s.version,
            ),
            spacing="0",
            align="start",
            width="100%",
        ),
        max_height="70vh",
        overflow_y="auto",
        width="100%",
        border=f"1px solid {rx.color('gray', 6)}",
        border_radius="8px",
        background=rx.color("gray", 2),
        data_scroll="",
    )


def _problem(p: rx.Var[ProblemView]) -> rx.Component:
    return rx.hstack(
        rx.badge(p.severity, color_scheme=rx.cond(p.severity == "error", "red", "amber"), variant="soft"),
        rx.link(p.where, on_click=ConfigState.go_to_line(p.line), cursor="pointer", size="2", white_space="nowrap"),
        rx.text(p.message, size="2"),
        align="start",
        spacing="2",
        wrap="wrap",
        data_problem_line=p.line,
    )


def config_page() -> rx.Component:
    s = ConfigState
    return page_shell(
        "Config",
        error_callout(s.load_error),
        rx.text(
            "The llama-swap style config.yaml this Switchyard runs. Problems are checked as you type; a save "
            "keeps a backup of the previous file and reloads the gateway (models whose settings did not change "
            "keep running).",
            size="2",
            color=rx.color("gray", 11),
        ),
        rx.hstack(
            rx.badge(s.summary, color_scheme=rx.cond(s.valid, "green", "red"), size="2", id="config-status"),
            rx.cond(s.dirty, rx.badge("unsaved changes", color_scheme="amber", variant="soft")),
            rx.spacer(),
            rx.button("Reload", variant="soft", color_scheme="gray", on_click=s.reload, id="config-reload"),
            rx.button("Save", on_click=s.save(EDITOR_TEXT), loading=s.saving, id="config-save"),
            width="100%",
            align="center",
            wrap="wrap",
            spacing="3",
        ),
        error_callout(s.error),
        rx.cond(
            s.message != "",
            rx.callout(s.message, icon="check", color_scheme="green", width="100%", id="config-message"),
        ),
        rx.cond(
            s.problems.length() > 0,
            rx.card(
                rx.vstack(rx.foreach(s.problems, _problem), spacing="2", width="100%"),
                width="100%",
                id="config-problems",
            ),
        ),
        rx.cond(s.loaded, _editor(), rx.spinner()),
    )
