"""What the pages show about requests: display rows and the stat tiles, computed from API rows.

Kept apart from the Reflex states so the arithmetic (what "tokens/s" means over many requests) is plain
Python, testable without a browser, and the states stay thin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ui_reflex.api_client import RequestRow


@dataclass(frozen=True)
class RequestView:
    """One request, formatted for tables and the detail drawer (strings, so the browser does no arithmetic)."""

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
    )


@dataclass(frozen=True)
class RequestStats:
    """The dashboard's stat tiles over a window of recent requests."""

    requests: int
    tokens: int  # prompt + completion
    tokens_per_second: float | None  # completion tokens over the time spent generating them
    errors: int

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
    )


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
