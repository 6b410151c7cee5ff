"""Compile and solve times of the swap-matrix DSL on large expressions.

Run: ``python tests/bench/bench_matrix.py`` — prints a table and exits 1 when a
bar from issue 3 is missed:

* an expression describing 10,000 combinations (4 groups of 10 alternatives
  ANDed) compiles in ≤ 50 ms and solves in ≤ 100 µs per request;
* 10 groups of 10 (10¹⁰ combinations) still solve in milliseconds.

For reference, llama-swap's Go solver takes about 9 µs at 10K combinations.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `core` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core.config.schema import MatrixConfig
from core.swap.matrix import MatrixPolicy, compile_matrix

MS = 1e-3
US = 1e-6


def product_matrix(groups: int, choices: int = 10) -> tuple[MatrixConfig, set[str]]:
    """`target & (m0-0 | … | m0-9) & (m1-0 | …) & …`: choices**groups combinations."""
    alternatives = [[f"model-{g}-{c}" for c in range(choices)] for g in range(groups)]
    expression = "target & " + " & ".join("(" + " | ".join(group) + ")" for group in alternatives)
    models = {"target", "outside"} | {m for group in alternatives for m in group}
    return MatrixConfig(sets={"large": expression}), models


def typical_running(groups: int) -> list[str]:
    """One running model per group plus one the matrix does not name (llama-swap's benchmark)."""
    return [f"model-{g}-0" for g in range(groups)] + ["outside"]


def crowded_running(groups: int) -> list[str]:
    """Two running alternatives per group: 2**groups incomparable projections, the solver's hard case."""
    return [f"model-{g}-{c}" for g in range(groups) for c in (0, 1)]


def multi_set_matrix(sets: int, choices: int = 10) -> tuple[MatrixConfig, set[str]]:
    """`target-N & (a-N-*) & (b-N-*)` for N sets, with eviction multipliers 2 (a) and 5 (b)."""
    definitions, costs, models = {}, {}, {"outside"}
    for s in range(sets):
        a = [f"a-{s}-{c}" for c in range(choices)]
        b = [f"b-{s}-{c}" for c in range(choices)]
        definitions[f"set-{s}"] = f"target-{s} & ({' | '.join(a)}) & ({' | '.join(b)})"
        costs.update({m: 2 for m in a} | {m: 5 for m in b})
        models |= {f"target-{s}", *a, *b}
    return MatrixConfig(evict_costs=costs, sets=definitions), models


def median_seconds(call: Callable[[], object], *, batches: int, per_batch: int) -> float:
    """Median over `batches` of the mean time of `per_batch` calls (damps timer noise and scheduler hiccups)."""
    samples = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(per_batch):
            call()
        samples.append((time.perf_counter() - start) / per_batch)
    return statistics.median(samples)


def compile_seconds(groups: int, *, batches: int = 15) -> float:
    matrix, models = product_matrix(groups)
    return median_seconds(lambda: compile_matrix(matrix, models), batches=batches, per_batch=3)


def solve_seconds(groups: int, running: list[str], *, batches: int = 25, per_batch: int = 100) -> float:
    matrix, models = product_matrix(groups)
    program = compile_matrix(matrix, models)
    return median_seconds(lambda: program.solve("target", running), batches=batches, per_batch=per_batch)


@dataclass
class Row:
    what: str
    seconds: float
    bar: float | None  # seconds; None: informational

    @property
    def ok(self) -> bool:
        return self.bar is None or self.seconds <= self.bar


def run() -> list[Row]:
    rows = []
    for groups in (2, 3, 4, 5, 10):
        rows.append(Row(f"compile {groups}x10 ({10**groups:,} combinations)", compile_seconds(groups),
                        50 * MS if groups == 4 else None))  # fmt: skip
    for groups in (2, 3, 4, 5, 10):
        bar = 100 * US if groups == 4 else 1 * MS if groups == 10 else None
        rows.append(
            Row(f"solve {groups}x10, one running per group", solve_seconds(groups, typical_running(groups)), bar)
        )
    for groups in (4, 10):
        per_batch = 100 if groups == 4 else 2
        seconds = solve_seconds(groups, crowded_running(groups), batches=9, per_batch=per_batch)
        rows.append(Row(f"solve {groups}x10, two running per group", seconds, 10 * MS if groups == 10 else None))

    matrix, models = product_matrix(4)
    policy = MatrixPolicy(matrix, models)
    for model in sorted(models):
        policy.record_load(model, 1.0 + len(model) / 10)
    running = typical_running(4)
    rows.append(Row("MatrixPolicy.evictions 4x10 (learned costs)",
                    median_seconds(lambda: policy.evictions("target", running), batches=25, per_batch=100), 100 * US))  # fmt: skip

    for sets in (1, 8, 32):
        matrix, models = multi_set_matrix(sets)
        program = compile_matrix(matrix, models)
        q = sets // 2
        running = [f"a-{q}-1", f"b-{q}-2", "a-0-0", "b-0-1", "outside"]
        costs = {m: float(matrix.evict_costs.get(m, 1)) for m in running}

        def solve(program=program, target=f"target-{q}", running=running, costs=costs) -> object:
            return program.solve(target, running, costs)

        rows.append(
            Row(f"solve {sets} sets of 1x10x10, costs", median_seconds(solve, batches=25, per_batch=100), 100 * US)
        )
    return rows


def _format(seconds: float) -> str:
    if seconds >= MS:
        return f"{seconds / MS:8.2f} ms"
    return f"{seconds / US:8.1f} µs"


def main() -> int:
    rows = run()
    width = max(len(r.what) for r in rows)
    print(f"{'case':<{width}}  {'median':>11}  {'bar':>11}  result")
    for r in rows:
        bar = _format(r.bar) if r.bar is not None else " " * 11
        print(f"{r.what:<{width}}  {_format(r.seconds)}  {bar}  {'ok' if r.ok else 'MISSED'}")
    missed = [r for r in rows if not r.ok]
    if missed:
        print(f"{len(missed)} bar(s) missed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
