"""What the pages show about requests: display rows, the detail view and the dashboard's numbers.

Kept apart from the Reflex states so the arithmetic (what "tokens/s" means over many requests) and the reading
of captured bodies (a chat prompt, a streamed reply) are plain Python, testable without a browser, and the
states stay thin.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ui_reflex.api_client import CapturedBody, RequestDetail, RequestRow


@dataclass(frozen=True)
class RequestView:
    """One request, formatted for tables (strings, so the browser does no arithmetic)."""

    id: int
    created_at: str  # ISO 8601, UTC; the browser shows it in local time
    method: str
    path: str
    model: str
    upstream_model: str
    status_code: int
    ok: bool
    duration: str
    ttft: str
    prompt_tokens: str
    completion_tokens: str
    cached_tokens: str
    tokens: str
    rate: str
    streamed: str
    client: str
    error: str
    cost: str = "—"
    key: str = "—"


def request_view(row: RequestRow) -> RequestView:
    prompt, completion = row.prompt_tokens, row.completion_tokens
    return RequestView(
        id=row.id,
        created_at=row.created_at.isoformat(),
        method=row.method,
        path=row.path,
        model=row.model or "—",
        upstream_model=row.upstream_model or "—",
        status_code=row.status_code,
        ok=row.ok,
        duration=format_ms(row.duration_ms),
        ttft=format_ms(row.ttft_ms),
        prompt_tokens=format_count(prompt),
        completion_tokens=format_count(completion),
        cached_tokens=format_count(row.cached_tokens),
        tokens="—" if prompt is None and completion is None else f"{prompt or 0} → {completion or 0}",
        rate=format_rate(row.tokens_per_second),
        streamed="yes" if row.streamed else "no",
        client=row.client_addr or "—",
        error=row.error or "",
        cost=format_cost(row.cost_usd, row.cost_known),
        key=row.api_key_name or row.api_key_id or "—",
    )


@dataclass(frozen=True)
class HeaderLine:
    name: str
    value: str


@dataclass(frozen=True)
class RequestDetailView:
    """Everything the detail drawer shows about one request."""

    row: RequestView
    upstream_model: str
    client_name: str
    end_user: str
    session_id: str
    client_addr: str
    routing: str  # the policy decision, in words
    policy_rule_id: str
    policy_action: str
    routed_model: str
    credentials: list[str]  # credential slugs injected into the upstream request (never their values)
    prompt: str
    prompt_note: str
    response: str
    response_note: str
    request_headers: list[HeaderLine]
    response_headers: list[HeaderLine]
    capture_note: str
    bytes_in_out: str


def request_detail_view(detail: RequestDetail) -> RequestDetailView:
    row = detail.request
    capture = detail.capture
    prompt, prompt_note = body_text(capture.request_body if capture else None, conversation_text)
    response, response_note = body_text(capture.response_body if capture else None, reply_text)
    if detail.capture_error:
        capture_note = f"The capture could not be read: {detail.capture_error}"
    elif capture is None:
        capture_note = "No capture was kept for this request (capture off, or a body over the limit)."
    else:
        capture_note = ""
    return RequestDetailView(
        row=request_view(row),
        upstream_model=row.upstream_model or "—",
        client_name=row.client_name or "—",
        end_user=row.end_user or "—",
        session_id=row.session_id or "—",
        client_addr=row.client_addr or "—",
        routing=routing_decision(row),
        policy_rule_id=row.policy_rule_id or "—",
        policy_action=row.policy_action or "—",
        routed_model=row.routed_model or "—",
        credentials=list(row.credentials_used),
        prompt=prompt,
        prompt_note=prompt_note,
        response=response,
        response_note=response_note,
        request_headers=[HeaderLine(n, v) for n, v in (capture.request_headers if capture else ())],
        response_headers=[HeaderLine(n, v) for n, v in (capture.response_headers if capture else ())],
        capture_note=capture_note,
        bytes_in_out=f"{format_bytes(row.request_bytes)} in, {format_bytes(row.response_bytes)} out",
    )


def routing_decision(row: RequestRow) -> str:
    """The policy decision behind a request, in words."""
    if not row.policy_rule_id:
        return "No routing rule matched: the requested model served it."
    action = row.policy_action or "continue"
    text = f"Rule {row.policy_rule_id} matched ({action})"
    if row.routed_model and row.routed_model != row.model:
        text += f", sent to {row.routed_model}"
    return text + "."


def body_text(body: CapturedBody | None, reader: Any) -> tuple[str, str]:
    """(readable text, a note about what is missing) for a captured body, read with `reader` when it parses."""
    if body is None:
        return "", "not captured"
    if body.omitted:
        return "", f"{body.content_type or 'body'} of {format_bytes(body.size)} ({body.omitted}, not kept)"
    text = body.text or ""
    readable = reader(text)
    note = f"cut at the capture limit ({format_bytes(body.size)} in all)" if body.truncated else ""
    return (readable if readable is not None else text), note


def conversation_text(text: str) -> str | None:
    """The prompt of a chat, completion or embedding request as plain text (None when the body is not one)."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    parts: list[str] = []
    if isinstance(data.get("system"), str):
        parts.append(f"system: {data['system']}")
    for message in data.get("messages") or ():
        if isinstance(message, dict):
            parts.append(f"{message.get('role', '?')}: {_content_text(message.get('content'))}")
    for field in ("prompt", "input"):
        value = data.get(field)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list) and field == "input":
            parts.extend(_content_text(item.get("content")) if isinstance(item, dict) else str(item) for item in value)
    return "\n\n".join(parts) if parts else None


def reply_text(text: str) -> str | None:
    """The generated text of a response: a JSON answer, or the deltas of an SSE stream joined up."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            return _reply_of(json.loads(text))
        except ValueError:
            pass
    if "data:" in text:
        pieces = []
        for line in text.splitlines():
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if not payload or payload == "[DONE]":
                continue
            try:
                event = json.loads(payload)
            except ValueError:
                continue
            pieces.append(_delta_of(event))
        joined = "".join(pieces)
        return joined if joined else None
    return None


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, dict):
                out.append(str(part.get("text") or f"[{part.get('type', 'part')}]"))
            else:
                out.append(str(part))
        return " ".join(out)
    return "" if content is None else str(content)


def _reply_of(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    pieces = []
    for choice in data.get("choices") or ():
        message = choice.get("message") or {}
        pieces.append(_content_text(message.get("content")) or str(choice.get("text") or ""))
    if data.get("type") == "message":  # Anthropic
        pieces.extend(_content_text([c]) for c in data.get("content") or ())
    if isinstance(data.get("output_text"), str):
        pieces.append(data["output_text"])
    text = "".join(pieces)
    return text if text else None


def _delta_of(event: Any) -> str:
    if not isinstance(event, dict):
        return ""
    out = ""
    for choice in event.get("choices") or ():
        delta = choice.get("delta") or {}
        out += str(delta.get("content") or choice.get("text") or "")
    delta = event.get("delta")
    if isinstance(delta, dict) and delta.get("type") == "text_delta":  # Anthropic
        out += str(delta.get("text") or "")
    if event.get("type") == "response.output_text.delta":  # OpenAI Responses
        out += str(event.get("delta") or "")
    return out


# --------------------------------------------------------------------------- the dashboard's numbers


@dataclass(frozen=True)
class RequestStats:
    """The dashboard's stat tiles over a window of recent requests."""

    requests: int
    tokens: int  # prompt + completion
    tokens_per_second: float | None  # completion tokens over the time spent generating them
    errors: int
    cost_usd: float = 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def summarize_requests(rows: Sequence[RequestRow]) -> RequestStats:
    """Stats over `rows`. Tokens/s is Σ completion tokens / Σ generation seconds (each row's tokens divided by
    its own rate), so a long generation weighs more than a one-token reply, unlike a mean of per-request rates.
    """
    tokens = sum((r.prompt_tokens or 0) + (r.completion_tokens or 0) for r in rows)
    generated, seconds = 0, 0.0
    for row in rows:
        if row.completion_tokens and row.tokens_per_second:
            generated += row.completion_tokens
            seconds += row.completion_tokens / row.tokens_per_second
    return RequestStats(
        requests=len(rows),
        tokens=tokens,
        tokens_per_second=generated / seconds if seconds > 0 else None,
        errors=sum(1 for r in rows if not r.ok),
        cost_usd=sum(r.cost_usd or 0.0 for r in rows),
    )


def bucket_rows(
    rows: Sequence[RequestRow], since: datetime, bucket_seconds: float, buckets: int
) -> list[list[RequestRow]]:
    """`rows` in `buckets` equal time slices from `since` (rows outside are dropped), like the server's histogram."""
    out: list[list[RequestRow]] = [[] for _ in range(buckets)]
    if bucket_seconds <= 0:
        return out
    for row in rows:
        slot = int((row.created_at - since).total_seconds() // bucket_seconds)
        if 0 <= slot < buckets:
            out[slot].append(row)
    return out


def format_ms(ms: float | None) -> str:
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    minutes, seconds = divmod(ms / 1000, 60)
    return f"{minutes:.0f} m {seconds:.0f} s"


def format_count(n: int | None) -> str:
    if n is None:
        return "—"
    if n < 10_000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.2f}M"


def format_rate(tokens_per_second: float | None) -> str:
    if tokens_per_second is None:
        return "—"
    return f"{tokens_per_second:.1f} tok/s" if tokens_per_second < 1000 else f"{tokens_per_second:,.0f} tok/s"


def format_cost(usd: float | None, known: bool = True) -> str:
    """Dollars with enough digits for sub-cent requests; ``—`` when the price is unknown."""
    if usd is None or (not known and not usd):
        return "—"
    if usd == 0:
        return "$0"
    if usd < 0.01:
        return f"${usd:.5f}"
    return f"${usd:,.2f}" if usd >= 1 else f"${usd:.4f}"


def format_bytes(n: int | None) -> str:
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def format_duration(seconds: float | None) -> str:
    """Uptime-style durations: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"
