"""Reading what people type into forms: lists, optional numbers, pattern lists. Plain functions, unit-tested.

Reflex hands a submitted form to its state as a dict of strings; these turn those strings into the values the
API expects, and say clearly what is wrong with a value instead of sending it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ui_reflex.api_client import AttributionSource, CredentialBinding, HeaderCondition


class FormProblem(ValueError):
    """A field that cannot be read; the message names the field and says why."""


def text(form: Mapping[str, Any], name: str) -> str:
    return str(form.get(name) or "").strip()


def items(value: str) -> tuple[str, ...]:
    """Entries separated by commas or new lines, trimmed, empty ones and repeats dropped (order kept)."""
    return tuple(dict.fromkeys(part.strip() for part in re.split(r"[,\n]", value or "") if part.strip()))


def optional_int(form: Mapping[str, Any], name: str, label: str, *, minimum: int = 0) -> int | None:
    """An optional whole number: empty (or 0 where 0 means unlimited) is None."""
    raw = text(form, name)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise FormProblem(f"{label} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise FormProblem(f"{label} must be {minimum} or more")
    return value or None


def required_int(
    form: Mapping[str, Any], name: str, label: str, *, minimum: int = 0, maximum: int | None = None
) -> int:
    raw = text(form, name)
    try:
        value = int(raw)
    except ValueError:
        raise FormProblem(f"{label} must be a whole number, not {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"{minimum} or more"
        raise FormProblem(f"{label} must be {bound}")
    return value


def checked(form: Mapping[str, Any], name: str) -> bool:
    """A checkbox or switch: browsers send "on" when it is ticked and nothing when it is not."""
    value = form.get(name)
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() in {"on", "true", "1", "yes"}


# --------------------------------------------------------------------------- credential bindings and header matchers

BINDING_HELP = (
    "One per line. Header: slug: Header-Name: template with {secret} (e.g. openai: Authorization: Bearer {secret}). "
    "Placeholder: slug: placeholder (clients send {{switchyard:credential:slug}} in a header) or "
    "slug: placeholder in body (in the JSON body too)."
)


def bindings_from_lines(value: str) -> tuple[CredentialBinding, ...]:
    """Credential bindings from the one-per-line form described in :data:`BINDING_HELP`."""
    out = []
    for number, raw in enumerate((value or "").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        slug, sep, rest = line.partition(":")
        slug, rest = slug.strip(), rest.strip()
        if not sep or not slug or not rest:
            raise FormProblem(f"binding line {number}: write slug: Header-Name: template, or slug: placeholder")
        if rest.lower() in ("placeholder", "placeholder in body"):
            out.append(CredentialBinding(slug, mode="placeholder", in_body=rest.lower().endswith("in body")))
            continue
        header, sep, template = rest.partition(":")
        header, template = header.strip(), template.strip() or "{secret}"
        if not header:
            raise FormProblem(f"binding line {number}: the header name is missing")
        out.append(CredentialBinding(slug, mode="header", header=header, template=template))
    return tuple(out)


def bindings_to_lines(bindings: Sequence[CredentialBinding]) -> str:
    lines = []
    for b in bindings:
        if b.mode == "placeholder":
            lines.append(f"{b.credential}: placeholder" + (" in body" if b.in_body else ""))
        else:
            lines.append(f"{b.credential}: {b.header}: {b.template}")
    return "\n".join(lines)


def header_conditions_from_lines(value: str) -> tuple[HeaderCondition, ...]:
    """``name: pattern`` per line (pattern a glob or ``re:…``; a name alone means the header is present)."""
    out = []
    for raw in (value or "").splitlines():
        line = raw.strip()
        if not line:
            continue
        name, _, pattern = line.partition(":")
        if not name.strip():
            raise FormProblem(f"header condition {line!r} needs a header name")
        out.append(HeaderCondition(name.strip(), pattern.strip() or "*"))
    return tuple(out)


def header_conditions_to_lines(conditions: Sequence[HeaderCondition]) -> str:
    return "\n".join(f"{c.name}: {c.pattern}" for c in conditions)


# --------------------------------------------------------------------------- attribution sources

SOURCE_HELP = (
    "One source per line, tried in order: header:NAME or body:dotted.path, optionally a regular expression "
    "between slashes whose first group is the value, and fallback to use the whole value when it does not match "
    "(e.g. body:metadata.user_id /session_([0-9a-f-]+)/ fallback)."
)


def sources_from_lines(value: str) -> tuple[AttributionSource, ...]:
    out = []
    for number, raw in enumerate((value or "").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        fallback = False
        if line.endswith(" fallback"):
            fallback, line = True, line[: -len(" fallback")].rstrip()
        pattern = ""
        if line.endswith("/") and " /" in line:
            head, _, pattern = line.partition(" /")
            line, pattern = head.strip(), pattern[:-1]
        kind, sep, name = line.partition(":")
        kind, name = kind.strip().lower(), name.strip()
        if not sep or kind not in ("header", "body") or not name:
            raise FormProblem(f"source line {number}: write header:NAME or body:dotted.path, not {raw.strip()!r}")
        out.append(AttributionSource(kind, name, pattern, fallback))
    return tuple(out)


def sources_to_lines(sources: Sequence[AttributionSource]) -> str:
    lines = []
    for s in sources:
        line = f"{s.kind}:{s.name}"
        if s.pattern:
            line += f" /{s.pattern}/"
        if s.fallback:
            line += " fallback"
        lines.append(line)
    return "\n".join(lines)
