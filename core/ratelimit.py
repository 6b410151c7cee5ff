"""Per-key requests-per-minute and tokens-per-minute limits, with an injectable clock.

Each key has two sliding windows of 60 one-second buckets: one counts admitted requests, the other the tokens
its responses used. A window holds at most 60 buckets whatever the traffic, and the limiter keeps windows for at
most ``max_keys`` keys (least recently used are forgotten first), so memory is bounded.

Semantics, precisely:

* **Requests.** A request is admitted when fewer than ``rpm`` requests were admitted in the window (the current
  second and the 59 before it); the admitted request is counted. Rejected requests are *not* counted, so a
  client that keeps retrying is not locked out for longer than its own traffic warrants.
* **Tokens.** Tokens are only known after a response (from the scraped usage), so :meth:`RateLimiter.check`
  rejects when the tokens recorded in the window already reach ``tpm``; :meth:`RateLimiter.record_tokens` adds
  them afterwards. One large response can therefore overshoot the limit; the next request then waits.
* **Window edges** are quantised to one second: something counted at 12.7 s stops counting at 72.0 s.
* ``retry_after`` is the time until enough buckets expire for the request to be admitted; the ``reset`` values
  are the time until the window is empty (OpenAI's "resets to its initial state").

The limiter lives in one process: with several gateway workers each enforces the limits on its own share.
Everything runs on the event loop thread; there is no locking.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

WINDOW_SECONDS = 60.0
BUCKET_SECONDS = 1.0
DEFAULT_MAX_KEYS = 100_000


class SlidingWindow:
    """Amounts added per time bucket, summed over the last `span` buckets. At most `span` buckets are kept."""

    __slots__ = ("_buckets", "total")

    def __init__(self) -> None:
        self._buckets: deque[list[int]] = deque()  # [bucket index, amount], oldest first
        self.total = 0

    def expire(self, now_index: int, span: int) -> None:
        oldest_live = now_index - span + 1
        buckets = self._buckets
        while buckets and buckets[0][0] < oldest_live:
            self.total -= buckets.popleft()[1]

    def add(self, index: int, amount: int) -> None:
        buckets = self._buckets
        self.total += amount
        if buckets and buckets[-1][0] == index:
            buckets[-1][1] += amount
            return
        if not buckets or buckets[-1][0] < index:
            buckets.append([index, amount])
            return
        # a late record (an `at` older than the newest bucket): keep the buckets ordered
        for position in range(len(buckets) - 1, -1, -1):
            if buckets[position][0] == index:
                buckets[position][1] += amount
                return
            if buckets[position][0] < index:
                buckets.insert(position + 1, [index, amount])
                return
        buckets.appendleft([index, amount])

    def buckets_until_below(self, limit: int, span: int) -> int | None:
        """Index at which the total first drops below `limit` as old buckets expire (None if already below)."""
        remaining = self.total
        if remaining < limit:
            return None
        for index, amount in self._buckets:
            remaining -= amount
            if remaining < limit:
                return index + span
        return None  # only for limit <= 0, which callers never pass

    def empty_at(self, span: int) -> int | None:
        """Bucket index at which every counted amount has expired (None when empty)."""
        return self._buckets[-1][0] + span if self._buckets else None

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether a request may proceed, and what to tell the client in ``x-ratelimit-*`` headers.

    Limits that are not set (None) produce no headers. Durations are seconds.
    """

    allowed: bool
    retry_after: float = 0.0
    exceeded: Literal["requests", "tokens"] | None = None
    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float = 0.0
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float = 0.0

    @property
    def message(self) -> str:
        if self.allowed:
            return ""
        if self.exceeded == "requests":
            return f"rate limit reached: {self.limit_requests} requests per minute; retry in {self.retry_after_header}s"
        return f"rate limit reached: {self.limit_tokens} tokens per minute; retry in {self.retry_after_header}s"

    @property
    def retry_after_header(self) -> str:
        """`Retry-After` in whole seconds, rounded up, at least 1."""
        return str(max(1, math.ceil(self.retry_after - 1e-9)))

    def headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.limit_requests is not None:
            out["x-ratelimit-limit-requests"] = str(self.limit_requests)
            out["x-ratelimit-remaining-requests"] = str(self.remaining_requests)
            out["x-ratelimit-reset-requests"] = format_duration(self.reset_requests)
        if self.limit_tokens is not None:
            out["x-ratelimit-limit-tokens"] = str(self.limit_tokens)
            out["x-ratelimit-remaining-tokens"] = str(self.remaining_tokens)
            out["x-ratelimit-reset-tokens"] = format_duration(self.reset_tokens)
        if not self.allowed:
            out["retry-after"] = self.retry_after_header
        return out


UNLIMITED = RateDecision(allowed=True)


class _KeyWindows:
    __slots__ = ("requests", "tokens")

    def __init__(self) -> None:
        self.requests = SlidingWindow()
        self.tokens = SlidingWindow()


class RateLimiter:
    """Sliding-window RPM and TPM limits per key id.

    Limits are passed on each call (read from the key's record), so an admin's change applies on the next request
    without touching the limiter. `clock` returns seconds (monotonic by default; tests pass a fake).
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        window_s: float = WINDOW_SECONDS,
        bucket_s: float = BUCKET_SECONDS,
        max_keys: int = DEFAULT_MAX_KEYS,
    ):
        if window_s <= 0 or bucket_s <= 0 or window_s < bucket_s:
            raise ValueError("window_s and bucket_s must be positive, with window_s >= bucket_s")
        self.clock = clock
        self.bucket_s = bucket_s
        self.span = max(1, round(window_s / bucket_s))
        self.max_keys = max_keys
        self._keys: OrderedDict[str, _KeyWindows] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def check(self, key_id: str, *, rpm: int | None, tpm: int | None, now: float | None = None) -> RateDecision:
        """Admit (and count) one request for `key_id`, or say why not and for how long."""
        rpm = rpm if rpm and rpm > 0 else None
        tpm = tpm if tpm and tpm > 0 else None
        if rpm is None and tpm is None:
            return UNLIMITED
        now = self.clock() if now is None else now
        index = self._index(now)
        windows = self._windows(key_id)
        span = self.span
        windows.requests.expire(index, span)
        windows.tokens.expire(index, span)
        requests, tokens = windows.requests, windows.tokens

        exceeded: Literal["requests", "tokens"] | None = None
        retry_at = index
        if rpm is not None and (free_at := requests.buckets_until_below(rpm, span)) is not None:
            exceeded = "requests"
            retry_at = max(retry_at, free_at)
        if tpm is not None and (free_at := tokens.buckets_until_below(tpm, span)) is not None:
            exceeded = exceeded or "tokens"
            retry_at = max(retry_at, free_at)
        if exceeded is None:
            requests.add(index, 1)
        return RateDecision(
            allowed=exceeded is None,
            retry_after=max(0.0, retry_at * self.bucket_s - now) if exceeded else 0.0,
            exceeded=exceeded,
            limit_requests=rpm,
            remaining_requests=max(0, rpm - requests.total) if rpm is not None else None,
            reset_requests=self._until(requests.empty_at(span), now),
            limit_tokens=tpm,
            remaining_tokens=max(0, tpm - tokens.total) if tpm is not None else None,
            reset_tokens=self._until(tokens.empty_at(span), now),
        )

    def record_tokens(self, key_id: str, tokens: int, at: float | None = None) -> None:
        """Count `tokens` a response used, at clock time `at` (default now).

        Only keys that have a limit are tracked (a key :meth:`check` never limited has no window), and a record
        older than the window is dropped.
        """
        if tokens <= 0:
            return
        windows = self._keys.get(key_id)
        if windows is None:
            return
        now = self.clock()
        at = now if at is None else at
        index, now_index = self._index(at), self._index(now)
        if index <= now_index - self.span:
            return
        windows.tokens.expire(now_index, self.span)
        windows.tokens.add(index, tokens)

    def usage(self, key_id: str, now: float | None = None) -> tuple[int, int]:
        """(requests, tokens) counted for `key_id` in the current window."""
        windows = self._keys.get(key_id)
        if windows is None:
            return 0, 0
        index = self._index(self.clock() if now is None else now)
        windows.requests.expire(index, self.span)
        windows.tokens.expire(index, self.span)
        return windows.requests.total, windows.tokens.total

    def forget(self, key_id: str) -> None:
        """Drop a key's windows (it was deleted, or its limits were removed)."""
        self._keys.pop(key_id, None)

    def _windows(self, key_id: str) -> _KeyWindows:
        keys = self._keys
        windows = keys.get(key_id)
        if windows is not None:
            keys.move_to_end(key_id)
            return windows
        windows = keys[key_id] = _KeyWindows()
        while len(keys) > self.max_keys:
            keys.popitem(last=False)
        return windows

    def _index(self, moment: float) -> int:
        return math.floor(moment / self.bucket_s)

    def _until(self, index: int | None, now: float) -> float:
        return 0.0 if index is None else max(0.0, index * self.bucket_s - now)


def format_duration(seconds: float) -> str:
    """A duration as OpenAI writes it in ``x-ratelimit-reset-*``: ``"0s"``, ``"250ms"``, ``"17s"``, ``"1m0s"``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    whole = math.ceil(seconds - 1e-9)
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"
