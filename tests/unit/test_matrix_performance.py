"""The swap matrix's performance bars (issue 3), checked on every test run.

Medians over many repetitions keep this stable on a busy machine; the full
table is `python tests/bench/bench_matrix.py`.
"""

from __future__ import annotations

from tests.bench.bench_matrix import MS, US, compile_seconds, crowded_running, solve_seconds, typical_running


def test_ten_thousand_combinations_compile_within_50_ms():
    assert compile_seconds(4) <= 50 * MS


def test_ten_thousand_combinations_solve_within_100_us():
    assert solve_seconds(4, typical_running(4)) <= 100 * US


def test_ten_groups_of_ten_solve_in_milliseconds():
    assert solve_seconds(10, typical_running(10), batches=9, per_batch=20) <= 1 * MS
    assert solve_seconds(10, crowded_running(10), batches=3, per_batch=1) <= 50 * MS
