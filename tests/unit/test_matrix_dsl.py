"""core.swap.matrix: the set DSL — parsing, expansion, errors, and the projecting solver."""

from __future__ import annotations

import itertools
import random
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from core.config import ConfigError, load_config, load_config_text
from core.config.schema import MatrixConfig
from core.swap.matrix import (
    MATRIX_PATH,
    ExpansionTooLarge,
    MatrixError,
    MatrixProgram,
    check_matrix,
    compile_matrix,
)


def _find_example() -> Path:
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared/compat/llama-swap/config.example.yaml"
        if candidate.exists():
            return candidate
    raise FileNotFoundError("shared/compat/llama-swap/config.example.yaml not found above the tests")


EXAMPLE = _find_example()
EXAMPLE_TEXT = EXAMPLE.read_text()
SET_LIST = re.compile(r"\[([^\]]*)\]")


def identifiers(expression: str) -> set[str]:
    return set(re.findall(r"(?<![+\w.\-])[\w.\-:/]+", expression))


def program(sets: dict[str, str], models: set[str] | None = None, vars: dict[str, str] | None = None) -> MatrixProgram:
    if models is None:
        models = set().union(*(identifiers(e) for e in sets.values()))
    return compile_matrix(MatrixConfig(vars=vars or {}, sets=sets), models)


def expansion(expression: str, **sets: str) -> list[tuple[str, ...]]:
    return program({"under_test": expression, **sets}).expand("under_test")


def parse_sets(text: str) -> list[tuple[str, ...]]:
    return [tuple(sorted(m.strip() for m in group.split(","))) for group in SET_LIST.findall(text)]


def problems_of(sets: dict[str, str], models: set[str], **kwargs) -> list[MatrixError]:
    _, problems = check_matrix(MatrixConfig(sets=sets, **kwargs), models)
    return problems


# ------------------------------------------------------------------ the shared example's comments


def arrow_examples() -> list[tuple[str, list[tuple[str, ...]]]]:
    """`#   "(a | b) & c"        → [a, c], [b, c]` lines of the example config."""
    found = re.findall(r'^\s*#\s+"([^"]+)"\s+→\s+(\[.*\])\s*$', EXAMPLE_TEXT, re.MULTILINE)
    return [(expression, parse_sets(sets)) for expression, sets in found]


def expands_to_examples() -> list[tuple[str, str, list[tuple[str, ...]]]]:
    """`# expands to: [g,v], [q,v]` comments and the set definition that follows each."""
    found = re.findall(
        r"^\s*#\s*expands to:\s*(.+)\n(?:\s*#.*\n)*\s*([\w.\-]+):\s*\"([^\"]+)\"", EXAMPLE_TEXT, re.MULTILINE
    )
    return [(name, expression, parse_sets(sets)) for sets, name, expression in found]


def example_matrix() -> MatrixConfig:
    raw = yaml.safe_load(EXAMPLE_TEXT)["routing"]["router"]["settings"]["matrix"]
    return MatrixConfig(vars=raw["vars"], evict_costs=raw["evict_costs"], sets=raw["sets"])


class TestExampleComments:
    def test_the_example_still_documents_what_these_tests_check(self):
        assert len(arrow_examples()) >= 5
        assert len(expands_to_examples()) >= 3
        assert '"+llms & v"' in EXAMPLE_TEXT

    @pytest.mark.parametrize(("expression", "expected"), arrow_examples(), ids=[e for e, _ in arrow_examples()])
    def test_every_arrow_example_expands_as_documented(self, expression, expected):
        assert expansion(expression) == expected

    def test_a_ref_inlines_the_other_sets_expression_then_ands(self):
        # the example's `"+llms & v" → inline the llms set, then AND with v`
        assert expansion("+llms & v", llms="g | q | m") == [("g", "v"), ("q", "v"), ("m", "v")]

    @pytest.mark.parametrize(
        ("name", "expression", "expected"), expands_to_examples(), ids=[n for n, _, _ in expands_to_examples()]
    )
    def test_every_example_set_expands_as_its_comment_says(self, name, expression, expected):
        matrix = example_matrix()
        assert matrix.sets[name] == expression
        # the example names models it does not define; define them here so the matrix compiles
        models = set(matrix.vars.values()) | {i for e in matrix.sets.values() for i in identifiers(e)} - set(
            matrix.vars
        )
        compiled = compile_matrix(matrix, models)
        resolved = [tuple(sorted(matrix.vars.get(m, m) for m in combo)) for combo in expected]
        assert compiled.expand(name) == resolved

    def test_the_example_loads_with_its_inactive_matrix_reported_as_warnings(self, monkeypatch):
        for name, value in {"HOME": "/root", "API_KEY_1": "a", "API_KEY_2": "b", "OPENROUTER_API_KEY": "c"}.items():
            monkeypatch.setenv(name, value)
        config = load_config(EXAMPLE)
        assert config.router == "group"
        assert config.matrix is not None and list(config.matrix.sets) == ["standard", "with_rerank", "creative", "full"]
        matrix_warnings = [w for w in config.warnings if w.path.startswith("routing.router.settings.matrix")]
        assert any("'stable-diffusion'" in w.message for w in matrix_warnings)
        assert all(w.severity == "warning" for w in matrix_warnings)


# ------------------------------------------------------------------ grammar


class TestGrammar:
    @pytest.mark.parametrize(
        ("expression", "expected"),
        [
            ("a", [("a",)]),
            ("a & b", [("a", "b")]),
            ("a | b | c", [("a",), ("b",), ("c",)]),
            ("a | b & c", [("a",), ("b", "c")]),  # & binds tighter than |
            ("a & b | c", [("a", "b"), ("c",)]),
            ("(a | b) & c", [("a", "c"), ("b", "c")]),
            ("a & (b | c) & d", [("a", "b", "d"), ("a", "c", "d")]),
            ("((a))", [("a",)]),
            ("a & a", [("a",)]),  # a model is in a set once
            ("a | a", [("a",)]),
            ("(a | b) & (a | b)", [("a",), ("a", "b"), ("b",)]),
            ("  a\n&\tb  ", [("a", "b")]),
        ],
    )
    def test_expansion(self, expression, expected):
        assert expansion(expression) == expected

    def test_identifiers_may_hold_dots_dashes_underscores_colons_and_slashes(self):
        ids = ["llama-3.1-8b", "qwen_coder", "qwen3:8b", "org/model.gguf"]
        assert expansion(" & ".join(ids)) == [tuple(sorted(ids))]

    def test_refs_nest_and_can_be_shared(self):
        sets = {
            "llms": "g | q",
            "with_tts": "+llms & v",
            "mega": "+with_tts & e",
            "diamond": "+llms & +with_tts",
        }
        compiled = program(sets)
        assert compiled.expand("mega") == [("e", "g", "v"), ("e", "q", "v")]
        assert compiled.expand("diamond") == [("g", "v"), ("g", "q", "v"), ("q", "v")]

    def test_a_var_stands_for_its_model(self):
        compiled = program({"s": "g & v"}, models={"gemma-3", "voxtral"}, vars={"g": "gemma-3", "v": "voxtral"})
        assert compiled.expand("s") == [("gemma-3", "voxtral")]

    def test_a_var_wins_over_a_model_with_the_same_name(self):
        compiled = program({"s": "small & big"}, models={"small", "big", "tiny-7b"}, vars={"small": "tiny-7b"})
        assert compiled.expand("s") == [("big", "tiny-7b")]

    def test_expand_refuses_past_its_limit(self):
        groups = " & ".join("(" + " | ".join(f"m{g}{c}" for c in range(10)) + ")" for g in range(4))
        with pytest.raises(ExpansionTooLarge, match="more than 1000"):
            program({"big": groups}).expand("big", limit=1000)
        assert len(program({"big": groups}).expand("big", limit=10_000)) == 10_000

    def test_models_of_a_set_and_coexistence(self):
        compiled = program({"s": "(a | b) & c", "t": "d"})
        assert compiled.models_of("s") == {"a", "b", "c"}
        assert compiled.coexist(["a", "c"])
        assert not compiled.coexist(["a", "b"])
        assert not compiled.coexist(["c", "d"])
        assert compiled.coexist(["d"]) and compiled.coexist([])


# ------------------------------------------------------------------ errors


SETS_PATH = MATRIX_PATH + ("sets",)


class TestErrors:
    @pytest.mark.parametrize(
        ("expression", "column", "fragment"),
        [
            ("(a", 3, "expected ')' to close the '(' at column 1"),
            ("a)", 2, "unexpected ')'"),
            ("()", 2, "but found ')'"),
            ("a &", 4, "found the end of the expression"),
            ("| a", 1, "but found '|'"),
            ("a @ b", 3, "unexpected character '@'"),
            ("a & +", 5, "expected a set name after '+'"),
            ("a b", 3, "missing '&' or '|'"),
            ("", 1, "empty"),
            ("   ", 1, "empty"),
        ],
    )
    def test_syntax_errors_name_the_set_and_column(self, expression, column, fragment):
        (problem,) = problems_of({"ok": "a", "broken": expression}, {"a", "b"})
        assert problem.path == SETS_PATH + ("broken",)
        assert problem.column == column
        assert f"set 'broken', column {column}:" in str(problem)
        assert fragment in str(problem)

    def test_unknown_model_or_var(self):
        (problem,) = problems_of({"s": "a & (b | nope)"}, {"a", "b"})
        assert problem.path == SETS_PATH + ("s",)
        assert str(problem) == "set 's', column 10: unknown model or var 'nope'"

    def test_unknown_ref(self):
        (problem,) = problems_of({"s": "a | +nope"}, {"a"})
        assert problem.path == SETS_PATH + ("s",)
        assert str(problem) == "set 's', column 5: '+nope' refers to no set"

    @pytest.mark.parametrize(
        ("sets", "cycle"),
        [
            ({"a": "x & +a"}, "a → a"),
            ({"a": "+b", "b": "x | +a"}, "a → b → a"),
            ({"ok": "x", "a": "+b", "b": "+c & +ok", "c": "x | +b"}, "b → c → b"),
        ],
    )
    def test_ref_cycles_are_errors(self, sets, cycle):
        (problem,) = problems_of(sets, {"x"})
        assert "circular reference" in str(problem) and cycle in str(problem)
        assert problem.path == SETS_PATH + (cycle.split(" → ")[0],)
        with pytest.raises(MatrixError, match="circular"):
            compile_matrix(MatrixConfig(sets=sets), {"x"})

    def test_vars_and_evict_costs_must_name_models(self):
        problems = problems_of(
            {"s": "g"}, {"gemma"}, vars={"g": "gemma", "q": "qwen"}, evict_costs={"g": 5, "gemma": 2, "ghost": 3}
        )
        assert [(p.path, p.message) for p in problems] == [
            (MATRIX_PATH + ("vars", "q"), "var 'q' refers to unknown model 'qwen'"),
            (MATRIX_PATH + ("evict_costs", "ghost"), "'ghost' is neither a var nor a model"),
        ]

    def test_a_matrix_needs_a_set(self):
        (problem,) = problems_of({}, {"a"})
        assert problem.path == SETS_PATH

    def test_every_problem_is_reported_and_the_path_can_be_the_legacy_one(self):
        _, problems = check_matrix(MatrixConfig(sets={"a": "(x", "b": "y", "c": "+d"}), {"x"}, path=("matrix",))
        assert [p.path for p in problems] == [("matrix", "sets", "a"), ("matrix", "sets", "b"), ("matrix", "sets", "c")]


class TestLoader:
    MODELS = """
        models:
          a: {cmd: "srv --port ${PORT}", proxy: "http://127.0.0.1:${PORT}"}
          b: {cmd: "srv --port ${PORT}", proxy: "http://127.0.0.1:${PORT}"}
    """

    def test_an_active_matrix_with_a_syntax_error_fails_to_load(self):
        text = (
            self.MODELS
            + """
        routing:
          router:
            use: matrix
            settings:
              matrix:
                sets:
                  pair: "a & (b"
        """
        )
        with pytest.raises(ConfigError) as info:
            load_config_text(textwrap.dedent(text))
        (problem,) = info.value.problems
        assert problem.path == "routing.router.settings.matrix.sets.pair"
        assert "set 'pair', column 7" in problem.message
        assert problem.position is not None and problem.position.line == 12

    def test_an_active_matrix_naming_an_undefined_model_fails_to_load(self):
        text = (
            self.MODELS
            + """
        routing:
          router: {use: matrix, settings: {matrix: {sets: {pair: "a & c"}}}}
        """
        )
        with pytest.raises(ConfigError, match="unknown model or var 'c'"):
            load_config_text(textwrap.dedent(text))

    def test_an_inactive_matrix_only_warns(self):
        text = (
            self.MODELS
            + """
        routing:
          router: {use: group, settings: {matrix: {sets: {pair: "a & c", loop: "+loop"}}}}
        """
        )
        config = load_config_text(textwrap.dedent(text))
        messages = [w.message for w in config.warnings if w.path.startswith("routing.router.settings.matrix")]
        assert any("unknown model or var 'c'" in m for m in messages)
        assert any("circular reference" in m for m in messages)

    def test_the_legacy_top_level_matrix_is_active_and_checked(self):
        text = (
            self.MODELS
            + """
        matrix:
          sets:
            pair: "a & +nope"
        """
        )
        with pytest.raises(ConfigError) as info:
            load_config_text(textwrap.dedent(text))
        assert [p.path for p in info.value.problems] == ["matrix.sets.pair"]


# ------------------------------------------------------------------ the solver agrees with brute force


def brute_force(compiled: MatrixProgram, target: str, running: list[str], costs: dict[str, float]):
    """(best cost, first set reaching it) by expanding every set: the definition of the right answer."""
    best: tuple[float, str | None] | None = None
    for name in compiled.set_names:
        for combo in compiled.expand(name, limit=100_000):
            if target not in combo:
                continue
            cost = sum(costs.get(m, 1.0) for m in running if m not in combo)
            if best is None or cost < best[0]:
                best = (cost, name)
    return best


def test_the_projecting_solver_matches_brute_force_on_random_matrices():
    rng = random.Random(20240611)
    models = [f"m{i}" for i in range(9)]

    def expression(depth: int) -> str:
        if depth == 0 or rng.random() < 0.3:
            return rng.choice(models)
        op = rng.choice([" & ", " | "])
        return "(" + op.join(expression(depth - 1) for _ in range(rng.randint(2, 3))) + ")"

    for _ in range(150):
        sets = {f"s{i}": expression(3) for i in range(rng.randint(1, 4))}
        if rng.random() < 0.5 and len(sets) > 1:
            sets["s0"] += f" & +s{len(sets) - 1}"
        compiled = program(sets, models=set(models))
        target = rng.choice(models)
        running = rng.sample([m for m in models if m != target], rng.randint(0, 5))
        costs = {m: float(rng.choice([1, 2, 5, 0.5])) for m in running}
        decision = compiled.solve(target, running, costs)
        expected = brute_force(compiled, target, running, costs)
        if expected is None:
            assert decision.set_name is None and decision.evict == running
            continue
        assert (decision.cost, decision.set_name) == expected, sets
        kept = {target} | (set(running) - set(decision.evict))
        assert any(kept <= set(combo) for combo in compiled.expand(decision.set_name, limit=100_000))
        assert decision.cost == sum(costs[m] for m in decision.evict)


def test_solving_needs_no_expansion_of_a_ten_billion_combination_set():
    groups = [[f"m{g}-{c}" for c in range(10)] for g in range(10)]
    expression = "target & " + " & ".join("(" + " | ".join(group) + ")" for group in groups)
    compiled = program({"huge": expression})
    running = [group[3] for group in groups] + ["stray"]
    decision = compiled.solve("target", running)
    assert decision.evict == ["stray"] and decision.set_name == "huge"
    # two alternatives of the same group cannot both stay
    decision = compiled.solve("target", ["m0-1", "m0-2", "m1-1"], {"m0-1": 3.0, "m0-2": 1.0})
    assert decision.evict == ["m0-2"]


def test_more_models_than_a_machine_word():
    models = [f"m{i}" for i in range(100)]
    compiled = program({"wide": " & ".join(models), "narrow": "m99 | m0"})
    assert compiled.solve("m0", models[1:] + ["x"]).evict == ["x"]
    assert list(itertools.islice(compiled.expand("narrow"), 2)) == [("m99",), ("m0",)]
