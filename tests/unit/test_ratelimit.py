"""core.ratelimit: RPM and TPM per key on a fake clock — the 429 comes at exactly the right request."""

from __future__ import annotations

import pytest

from core.ratelimit import RateLimiter, SlidingWindow, format_duration


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> RateLimiter:
    return RateLimiter(clock)


class TestRequestsPerMinute:
    def test_the_request_after_the_limit_is_rejected(self, limiter, clock):
        for n in range(5):
            decision = limiter.check("k", rpm=5, tpm=None)
            assert decision.allowed, f"request {n + 1} should pass"
            assert decision.remaining_requests == 4 - n
            clock.advance(1)
        rejected = limiter.check("k", rpm=5, tpm=None)
        assert not rejected.allowed
        assert rejected.exceeded == "requests"
        assert rejected.remaining_requests == 0
        # the first request (t=1000) stops counting at t=1060; it is now t=1005
        assert rejected.retry_after == pytest.approx(55)
        assert rejected.headers()["retry-after"] == "55"

    def test_capacity_returns_when_the_oldest_request_leaves_the_window(self, limiter, clock):
        for _ in range(3):
            assert limiter.check("k", rpm=3, tpm=None).allowed
            clock.advance(10)  # requests at 1000, 1010, 1020
        clock.now = 1059.9
        assert not limiter.check("k", rpm=3, tpm=None).allowed
        clock.now = 1060.0
        assert limiter.check("k", rpm=3, tpm=None).allowed
        assert not limiter.check("k", rpm=3, tpm=None).allowed  # the 1060 request took the freed slot

    def test_rejected_requests_are_not_counted(self, limiter, clock):
        assert limiter.check("k", rpm=1, tpm=None).allowed
        for _ in range(100):
            assert not limiter.check("k", rpm=1, tpm=None).allowed
        clock.advance(60)
        assert limiter.check("k", rpm=1, tpm=None).allowed

    def test_keys_are_limited_independently(self, limiter):
        assert limiter.check("a", rpm=1, tpm=None).allowed
        assert not limiter.check("a", rpm=1, tpm=None).allowed
        assert limiter.check("b", rpm=1, tpm=None).allowed

    def test_a_lowered_limit_applies_on_the_next_request(self, limiter):
        for _ in range(3):
            assert limiter.check("k", rpm=10, tpm=None).allowed
        assert not limiter.check("k", rpm=3, tpm=None).allowed
        assert limiter.check("k", rpm=4, tpm=None).allowed

    def test_no_limits_admits_everything_and_keeps_no_state(self, limiter):
        for _ in range(1000):
            assert limiter.check("k", rpm=None, tpm=0).allowed
        assert len(limiter) == 0
        assert limiter.check("k", rpm=None, tpm=None).headers() == {}


class TestTokensPerMinute:
    def test_rejects_once_recorded_tokens_reach_the_limit(self, limiter, clock):
        assert limiter.check("k", rpm=None, tpm=1000).allowed
        limiter.record_tokens("k", 600)
        clock.advance(5)
        decision = limiter.check("k", rpm=None, tpm=1000)
        assert decision.allowed and decision.remaining_tokens == 400
        limiter.record_tokens("k", 400)  # 1000 used: the limit is reached, not exceeded
        clock.advance(5)
        rejected = limiter.check("k", rpm=None, tpm=1000)
        assert not rejected.allowed
        assert rejected.exceeded == "tokens"
        assert rejected.remaining_tokens == 0
        # 600 tokens at 1000 expire at 1060; then 400 < 1000 → admitted. Now t=1010.
        assert rejected.retry_after == pytest.approx(50)
        clock.now = 1060
        assert limiter.check("k", rpm=None, tpm=1000).allowed

    def test_retry_after_waits_until_enough_tokens_expire(self, limiter, clock):
        limiter.check("k", rpm=None, tpm=100)
        limiter.record_tokens("k", 50, at=1000)
        limiter.record_tokens("k", 80, at=1020)
        clock.now = 1030
        rejected = limiter.check("k", rpm=None, tpm=100)
        # after 1060 only 80 remain (< 100): the wait is until 1060, not until the window is empty (1080)
        assert rejected.retry_after == pytest.approx(30)
        assert rejected.reset_tokens == pytest.approx(50)

    def test_one_large_response_may_overshoot_then_the_next_request_waits(self, limiter):
        assert limiter.check("k", rpm=None, tpm=100).allowed
        limiter.record_tokens("k", 5000)
        assert not limiter.check("k", rpm=None, tpm=100).allowed

    def test_tokens_are_ignored_for_keys_without_limits_and_for_records_older_than_the_window(self, limiter, clock):
        limiter.record_tokens("never-limited", 10)
        assert len(limiter) == 0
        limiter.check("k", rpm=None, tpm=100)
        limiter.record_tokens("k", 500, at=clock.now - 61)
        assert limiter.usage("k") == (1, 0)

    def test_a_late_record_lands_in_its_own_second(self, limiter, clock):
        limiter.check("k", rpm=None, tpm=100)
        clock.now = 1030
        limiter.check("k", rpm=None, tpm=100)
        limiter.record_tokens("k", 100, at=1000)  # the first response, recorded late
        assert not limiter.check("k", rpm=None, tpm=100).allowed
        clock.now = 1060
        assert limiter.check("k", rpm=None, tpm=100).allowed


class TestBothLimits:
    def test_the_longer_wait_wins(self, limiter, clock):
        assert limiter.check("k", rpm=1, tpm=10).allowed  # request at 1000
        clock.now = 1020
        limiter.record_tokens("k", 10)  # tokens at 1020
        clock.now = 1030
        decision = limiter.check("k", rpm=1, tpm=10)
        assert not decision.allowed
        assert decision.exceeded == "requests"
        assert decision.retry_after == pytest.approx(50)  # tokens free at 1080, requests at 1060

    def test_headers_carry_both_dimensions_like_openai(self, limiter, clock):
        limiter.check("k", rpm=10, tpm=1000)
        limiter.record_tokens("k", 250)
        clock.advance(0.5)
        headers = limiter.check("k", rpm=10, tpm=1000).headers()
        assert headers == {
            "x-ratelimit-limit-requests": "10",
            "x-ratelimit-remaining-requests": "8",
            "x-ratelimit-reset-requests": "1m0s",
            "x-ratelimit-limit-tokens": "1000",
            "x-ratelimit-remaining-tokens": "750",
            "x-ratelimit-reset-tokens": "1m0s",
        }


class TestBoundedMemory:
    def test_least_recently_used_keys_are_forgotten_beyond_max_keys(self, clock):
        limiter = RateLimiter(clock, max_keys=3)
        for key in "abcd":
            limiter.check(key, rpm=1, tpm=None)
        assert len(limiter) == 3
        assert limiter.usage("a") == (0, 0)  # evicted
        assert limiter.usage("d") == (1, 0)

    def test_a_window_never_holds_more_than_60_buckets(self):
        window = SlidingWindow()
        for second in range(10_000):
            window.expire(second, 60)
            window.add(second, 1)
        assert len(window) == 60 and window.total == 60

    def test_forget_drops_a_key(self, limiter):
        limiter.check("k", rpm=1, tpm=None)
        limiter.forget("k")
        assert limiter.check("k", rpm=1, tpm=None).allowed


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (-1, "0s"), (0.25, "250ms"), (0.0001, "1ms"), (1, "1s"), (17.2, "18s"), (60, "1m0s"), (61, "1m1s")],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_message_names_the_limit(limiter):
    limiter.check("k", rpm=1, tpm=None)
    decision = limiter.check("k", rpm=1, tpm=None)
    assert decision.message == "rate limit reached: 1 requests per minute; retry in 60s"
