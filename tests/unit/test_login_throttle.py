"""LoginThrottle: exponential backoff per account and per address, on a fake clock."""

from __future__ import annotations

from api.admin.etag import etag_matches, etag_of
from api.auth.throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: Clock, **kwargs) -> LoginThrottle:
    return LoginThrottle(
        account_allowance=3,
        address_allowance=6,
        base_delay=1.0,
        max_delay=8.0,
        forget_after=60.0,
        clock=clock,
        **kwargs,
    )


def test_failures_within_the_allowance_cost_nothing():
    clock = Clock()
    limiter = throttle(clock)
    for _ in range(2):
        limiter.failed("Admin", "10.0.0.1")
    assert limiter.retry_after("admin", "10.0.0.1") == 0


def test_each_failure_past_the_allowance_doubles_the_wait_up_to_the_cap():
    clock = Clock()
    limiter = throttle(clock)
    waits = []
    for _ in range(7):
        limiter.failed("admin", None)
        waits.append(limiter.retry_after("admin", None))
    assert waits == [0, 0, 1, 2, 4, 8, 8]
    clock.now += 5
    assert limiter.retry_after("admin", None) == 3


def test_account_names_are_case_insensitive_and_success_clears_the_account():
    clock = Clock()
    limiter = throttle(clock)
    for _ in range(3):
        limiter.failed("ADMIN", None)
    assert limiter.retry_after("admin", None) == 1
    limiter.succeeded("Admin")
    assert limiter.retry_after("admin", None) == 0


def test_an_address_guessing_many_accounts_is_slowed_down():
    clock = Clock()
    limiter = throttle(clock)
    for index in range(6):
        limiter.failed(f"user{index}", "10.0.0.9")
    assert limiter.retry_after("someone-new", "10.0.0.9") == 1
    assert limiter.retry_after("someone-new", "10.0.0.10") == 0


def test_quiet_time_forgets_failures():
    clock = Clock()
    limiter = throttle(clock)
    for _ in range(5):
        limiter.failed("admin", None)
    clock.now += 61
    assert limiter.retry_after("admin", None) == 0
    limiter.failed("admin", None)  # counting starts over
    assert limiter.retry_after("admin", None) == 0


def test_the_table_is_bounded():
    clock = Clock()
    limiter = throttle(clock, max_entries=10)
    for index in range(50):
        limiter.failed(f"user{index}", None)
    assert len(limiter._failures) == 10  # the bound is the behaviour under test


def test_etags_compare_weakly_over_a_list():
    tag = etag_of(b'{"a": 1}')
    assert tag.startswith('"') and tag.endswith('"') and tag != etag_of(b'{"a": 2}')
    assert etag_matches(tag, tag)
    assert etag_matches(f'"other", W/{tag}', tag)
    assert etag_matches("*", tag)
    assert not etag_matches('"other"', tag)
