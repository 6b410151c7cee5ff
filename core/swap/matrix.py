"""The swap matrix: llama-swap's set DSL, compiled once and solved per request.

A matrix lists which models may run together. Each named set is an expression::

    &      AND: the models run together          a & b          → [a, b]
    |      OR: alternatives                      a | b          → [a], [b]
    ( )    grouping                              (a | b) & c    → [a, c], [b, c]
    +ref   the expression of another set         +llms & v

``&`` binds tighter than ``|``, so ``a | b & c`` means [a] or [b, c]. An
identifier is a var (a short name from ``vars``) or a model id; a var wins over
a model id of the same name.

Why no expansion: ``(a0|…|a9) & (b0|…|b9) & …`` describes 10ⁿ combinations, but a
request only cares about the requested model and the running ones. The program
keeps the expression graph and, per request, *projects* every choice onto those
few models (as bitmasks): a leaf outside them contributes nothing, ``|`` merges
alternatives, ``&`` unions them, and a projected state that is a subset of
another is dropped (evicting is never cheaper than keeping). Work is bounded by
the number of distinct projections, not by the Cartesian product.

Sets have subset semantics: a set only says its models *may* coexist; only the
requested model is started. The cost-aware choice between sets lives in
:class:`MatrixPolicy`.
"""

from __future__ import annotations

import re
import statistics
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the config loader imports this module to validate matrices
    from core.config.schema import MatrixConfig

MatrixPath = tuple[str | int, ...]

#: where the matrix lives in a config using `routing:` (the legacy top-level form is ("matrix",))
MATRIX_PATH: MatrixPath = ("routing", "router", "settings", "matrix")
VAR_NAME = re.compile(r"^[A-Za-z0-9.\-]{1,32}$")

# Identifiers: letters, digits (any script), '_', '-', '.' as in llama-swap, plus ':' and '/'
# so model ids such as "qwen3:8b" or "org/model" can be named without a var.
_IDENT = r"[\w.\-:/]+"
_TOKEN = re.compile(rf"(?P<space>\s+)|(?P<op>[&|()])|(?P<ref>\+(?:{_IDENT})?)|(?P<ident>{_IDENT})|(?P<bad>.)")

_LEAF, _REF, _AND, _OR = range(4)
_EMPTY: tuple[int, ...] = (0,)


class MatrixError(ValueError):
    """A problem in a matrix definition; `path` is the config key it belongs to."""

    def __init__(self, path: MatrixPath, message: str, column: int | None = None):
        super().__init__(message)
        self.path = path
        self.message = message
        self.column = column


class ExpansionTooLarge(ValueError):
    """`expand()` would list more concrete sets than its limit allows."""


# ----------------------------------------------------------------------------- parsing


class _Node:
    """One node of the expression graph. `support` is a bitmask of every model reachable below it."""

    __slots__ = ("bit", "children", "column", "kind", "name", "support", "target")

    def __init__(self, kind: int, name: str = "", column: int = 0, children: tuple[_Node, ...] = ()):
        self.kind = kind
        self.name = name  # leaf: the identifier, then the resolved model id; ref: the set name
        self.column = column
        self.children = children
        self.target: _Node | None = None  # ref: the referenced set's root
        self.bit = 0  # leaf: the model's bit
        self.support = 0


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "&", "|", "(", ")", "ref", "ident", "end"
    text: str
    column: int  # 1-based


def _tokenize(expression: str, fail: _Fail) -> list[_Token]:
    tokens = []
    for match in _TOKEN.finditer(expression):
        kind, text, column = match.lastgroup, match.group(), match.start() + 1
        if kind == "space":
            continue
        if kind == "op":
            tokens.append(_Token(text, text, column))
        elif kind == "ident":
            tokens.append(_Token("ident", text, column))
        elif kind == "ref":
            if len(text) == 1:
                raise fail("expected a set name after '+'", column)
            tokens.append(_Token("ref", text[1:], column))
        else:
            raise fail(f"unexpected character {text!r}", column)
    tokens.append(_Token("end", "", len(expression.rstrip()) + 1))
    return tokens


class _Fail:
    """Builds syntax errors that name the set and the column."""

    def __init__(self, path: MatrixPath, set_name: str):
        self.path = path
        self.set_name = set_name

    def __call__(self, message: str, column: int) -> MatrixError:
        return MatrixError(self.path, f"set {self.set_name!r}, column {column}: {message}", column)


class _Parser:
    """Recursive descent: or := and ('|' and)* ; and := atom ('&' atom)* ; atom := ident | +ref | '(' or ')'."""

    def __init__(self, tokens: list[_Token], fail: _Fail):
        self.tokens = tokens
        self.index = 0
        self.fail = fail

    def parse(self) -> _Node:
        root = self._or()
        token = self.tokens[self.index]
        if token.kind != "end":
            raise self.fail(
                f"unexpected {_describe(token)} after a complete expression (missing '&' or '|'?)", token.column
            )
        return root

    def _next(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def _or(self) -> _Node:
        children = [self._and()]
        while self.tokens[self.index].kind == "|":
            self.index += 1
            children.append(self._and())
        return children[0] if len(children) == 1 else _Node(_OR, children=tuple(children))

    def _and(self) -> _Node:
        children = [self._atom()]
        while self.tokens[self.index].kind == "&":
            self.index += 1
            children.append(self._atom())
        return children[0] if len(children) == 1 else _Node(_AND, children=tuple(children))

    def _atom(self) -> _Node:
        token = self._next()
        if token.kind == "ident":
            return _Node(_LEAF, token.text, token.column)
        if token.kind == "ref":
            return _Node(_REF, token.text, token.column)
        if token.kind == "(":
            inner = self._or()
            closing = self._next()
            if closing.kind != ")":
                raise self.fail(
                    f"expected ')' to close the '(' at column {token.column}, found {_describe(closing)}",
                    closing.column,
                )
            return inner
        raise self.fail(f"expected a model, a var, '+set' or '(' but found {_describe(token)}", token.column)


def _describe(token: _Token) -> str:
    if token.kind == "end":
        return "the end of the expression"
    if token.kind == "ref":
        return f"'+{token.text}'"
    return f"{token.text!r}"


def _walk(node: _Node) -> Iterable[_Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


# ----------------------------------------------------------------------------- compiling


@dataclass(frozen=True, slots=True)
class MatrixDecision:
    """What the solver chose for one request."""

    target: str
    evict: list[str]
    set_name: str | None  # None: the target is in no set and runs alone
    cost: float


class MatrixProgram:
    """A compiled matrix: immutable, solved per request without expanding combinations."""

    def __init__(self, roots: dict[str, _Node], bits: dict[str, int], expressions: dict[str, str]):
        self._roots = roots  # definition order
        self._sets = tuple(roots.items())
        self._bits = bits
        self._expressions = expressions

    @property
    def set_names(self) -> list[str]:
        return list(self._roots)

    @property
    def models(self) -> set[str]:
        """Every model id named by some set."""
        return set(self._bits)

    def expression(self, set_name: str) -> str:
        return self._expressions[set_name]

    def models_of(self, set_name: str) -> set[str]:
        """Every model that can appear in `set_name` (its support)."""
        support = self._roots[set_name].support
        return {model for model, bit in self._bits.items() if support & bit}

    # ------------------------------------------------------------- solving

    def solve(self, target: str, running: Iterable[str], costs: Mapping[str, float] | None = None) -> MatrixDecision:
        """Pick the set containing `target` that evicts the cheapest running models.

        `costs` maps a running model to the cost of evicting it (default 1). The
        first set in definition order wins a tie; inside a set, the first choice
        in expression order does. A target in no set runs alone.
        """
        running = [m for m in dict.fromkeys(running) if m != target]
        costs = costs or {}
        bits = self._bits
        target_bit = bits.get(target, 0)
        weights = [costs.get(m, 1.0) for m in running]
        if not target_bit:  # named by no set: it runs alone
            return MatrixDecision(target, running, None, float(sum(weights)))

        relevant = target_bit
        tracked: list[tuple[int, float]] = []  # (bit, cost) of running models some set names
        fixed = 0.0  # running models no set names are always evicted
        for model, weight in zip(running, weights):
            bit = bits.get(model, 0)
            if bit:
                relevant |= bit
                tracked.append((bit, weight))
            else:
                fixed += weight

        best_cost = -1.0
        best_mask = 0
        best_set: str | None = None
        memo: dict[int, Sequence[int]] = {}
        for name, root in self._sets:
            if not root.support & target_bit:
                continue
            for mask in _project(root, relevant, memo):
                if not mask & target_bit:
                    continue
                cost = fixed
                for bit, weight in tracked:
                    if not mask & bit:
                        cost += weight
                if best_set is None or cost < best_cost:
                    best_cost, best_mask, best_set = cost, mask, name
        evict = [m for m in running if not best_mask & bits.get(m, 0)]
        return MatrixDecision(target, evict, best_set, best_cost)

    def coexist(self, models: Collection[str]) -> bool:
        """True when one set allows every model in `models` to run at the same time."""
        required = 0
        for model in models:
            bit = self._bits.get(model)
            if bit is None:
                return len(set(models)) <= 1
            required |= bit
        if not required:
            return True
        memo: dict[int, Sequence[int]] = {}
        return any(
            required & ~root.support == 0 and any(required & ~mask == 0 for mask in _project(root, required, memo))
            for root in self._roots.values()
        )

    # ------------------------------------------------------------- expansion

    def expand(self, set_name: str, limit: int = 10_000) -> list[tuple[str, ...]]:
        """The concrete model sets `set_name` describes, each sorted, in expression order.

        Exponential by nature: for tests and admin display only. Raises
        :class:`ExpansionTooLarge` past `limit` sets.
        """
        names = {bit: model for model, bit in self._bits.items()}
        memo: dict[int, list[int]] = {}
        masks = _expand(self._roots[set_name], memo, limit, set_name)
        out = []
        for mask in masks:
            models = []
            while mask:
                low = mask & -mask
                models.append(names[low])
                mask ^= low
            out.append(tuple(sorted(models)))
        return out


def _project(node: _Node, relevant: int, memo: dict[int, Sequence[int]]) -> Sequence[int]:
    """The frontier of `node`'s choices projected onto `relevant`: distinct masks, none a subset of another."""
    if not node.support & relevant:
        return _EMPTY
    kind = node.kind
    if kind == _LEAF:
        return (node.bit,)
    if kind == _REF:
        key = id(node.target)
        cached = memo.get(key)
        if cached is None:
            cached = memo[key] = _project(node.target, relevant, memo)  # type: ignore[arg-type]
        return cached
    if kind == _OR:
        states: list[int] = []
        for child in node.children:
            if not child.support & relevant:
                continue  # its projection is empty, a subset of any relevant choice
            for mask in (child.bit,) if child.kind == _LEAF else _project(child, relevant, memo):
                _add(states, mask)
        return states
    # AND: union one choice of each child, pruning dominated unions after every step
    states = [0]
    seen = 0  # every bit any state so far holds
    for child in node.children:
        if not child.support & relevant:
            continue
        choices = (child.bit,) if child.kind == _LEAF else _project(child, relevant, memo)
        if len(choices) == 1 and len(states) == 1:
            states = [states[0] | choices[0]]
            seen = states[0]
            continue
        offered = 0
        for right in choices:
            offered |= right
        if not seen & offered:
            # Disjoint antichains: no union can contain another, so skip the pairwise checks.
            states = [left | right for left in states for right in choices]
        else:
            combined: list[int] = []
            for left in states:
                for right in choices:
                    _add(combined, left | right)
            states = combined
        seen |= offered
    return states


def _add(states: list[int], candidate: int) -> None:
    """Add `candidate` to an antichain of masks, keeping only maximal ones in first-seen order."""
    for mask in states:
        if candidate | mask == mask:
            return
    if states:
        states[:] = [mask for mask in states if mask | candidate != candidate]
    states.append(candidate)


def _expand(node: _Node, memo: dict[int, list[int]], limit: int, set_name: str) -> list[int]:
    key = id(node)
    if key in memo:
        return memo[key]
    if node.kind == _LEAF:
        out = [node.bit]
    elif node.kind == _REF:
        out = _expand(node.target, memo, limit, set_name)  # type: ignore[arg-type]
    elif node.kind == _OR:
        out = list(dict.fromkeys(m for child in node.children for m in _expand(child, memo, limit, set_name)))
    else:
        out = [0]
        for child in node.children:
            out = list(dict.fromkeys(a | b for a, b in product(out, _expand(child, memo, limit, set_name))))
            if len(out) > limit:
                break
    if len(out) > limit:
        raise ExpansionTooLarge(f"set {set_name!r} describes more than {limit} combinations")
    memo[key] = out
    return out


def check_matrix(
    matrix: MatrixConfig, model_ids: Collection[str], *, path: MatrixPath = MATRIX_PATH
) -> tuple[MatrixProgram | None, list[MatrixError]]:
    """Compile `matrix` against the configured `model_ids`; every problem is returned, none raised."""
    problems: list[MatrixError] = []
    for name, target in matrix.vars.items():
        if not VAR_NAME.match(name):
            problems.append(MatrixError(path + ("vars", name), "var names are 1-32 letters, digits, '-' or '.'"))
        elif target not in model_ids:
            problems.append(MatrixError(path + ("vars", name), f"var {name!r} refers to unknown model {target!r}"))

    def resolve(identifier: str) -> str | None:
        if identifier in matrix.vars:
            return matrix.vars[identifier]
        return identifier if identifier in model_ids else None

    for key in matrix.evict_costs:
        if resolve(key) is None:
            problems.append(MatrixError(path + ("evict_costs", key), f"{key!r} is neither a var nor a model"))
    if not matrix.sets:
        problems.append(MatrixError(path + ("sets",), "a matrix needs at least one set"))

    roots: dict[str, _Node] = {}
    refs: dict[str, list[str]] = {}
    broken = False
    for name, expression in matrix.sets.items():
        set_path = path + ("sets", name)
        fail = _Fail(set_path, name)
        try:
            if not expression.strip():
                raise fail("the expression is empty", 1)
            root = _Parser(_tokenize(expression, fail), fail).parse()
        except MatrixError as exc:
            problems.append(exc)
            broken = True
            continue
        refs[name] = []
        for node in _walk(root):
            if node.kind == _LEAF:
                model = resolve(node.name)
                if model is None:
                    problems.append(fail(f"unknown model or var {node.name!r}", node.column))
                    broken = True
                else:
                    node.name = model
            elif node.kind == _REF:
                if node.name not in matrix.sets:
                    problems.append(fail(f"'+{node.name}' refers to no set", node.column))
                    broken = True
                else:
                    refs[name].append(node.name)
        roots[name] = root

    cycle = _find_cycle(refs)
    if cycle:
        problems.append(
            MatrixError(path + ("sets", cycle[0]), f"set {cycle[0]!r}: circular reference {' → '.join(cycle)}")
        )
        broken = True
    if broken or problems:
        return None, problems
    return _link(roots, matrix.sets), []


def compile_matrix(
    matrix: MatrixConfig, model_ids: Collection[str], *, path: MatrixPath = MATRIX_PATH
) -> MatrixProgram:
    """Compile `matrix` or raise the first :class:`MatrixError` (use :func:`check_matrix` for all of them)."""
    program, problems = check_matrix(matrix, model_ids, path=path)
    if problems:
        raise problems[0]
    assert program is not None
    return program


def _find_cycle(refs: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 visiting, 2 done
    trail: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        trail.append(name)
        for dependency in refs.get(name, ()):
            if state.get(dependency) == 1:
                return trail[trail.index(dependency) :] + [dependency]
            if dependency not in state and (found := visit(dependency)):
                return found
        trail.pop()
        state[name] = 2
        return None

    for name in refs:
        if name not in state and (found := visit(name)):
            return found
    return None


def _link(roots: dict[str, _Node], expressions: Mapping[str, str]) -> MatrixProgram:
    bits: dict[str, int] = {}
    for root in roots.values():
        for node in _walk(root):
            if node.kind == _REF:
                node.target = roots[node.name]
            elif node.kind == _LEAF:
                node.bit = bits.setdefault(node.name, 1 << len(bits))

    def support(node: _Node) -> int:
        if node.support:
            return node.support
        if node.kind == _LEAF:
            node.support = node.bit
        elif node.kind == _REF:
            node.support = support(node.target)  # type: ignore[arg-type]
        else:
            total = 0
            for child in node.children:
                total |= support(child)
            node.support = total
        return node.support

    for root in roots.values():
        support(root)
    return MatrixProgram(roots, bits, dict(expressions))


# ----------------------------------------------------------------------------- policy


class LoadTimes:
    """How long each model takes to load, learned from measurements.

    A bounded window of samples per model; the estimate is the model's median
    blended with the fleet median (the median of per-model medians) with weight
    n/(n+k), so one unlucky first load (cold page cache) does not make a model
    look untouchable. A model never loaded is assumed at the fleet median, and
    when nothing was ever loaded every model is 1 ms, so only multipliers decide.
    """

    def __init__(self, window: int = 20, prior_weight: float = 2.0):
        self.window = window
        self.prior_weight = prior_weight
        self._samples: dict[str, deque[float]] = {}
        self._estimates: dict[str, float] = {}
        self._fleet: float | None = None

    def record(self, model_id: str, seconds: float) -> None:
        if not seconds >= 0:  # also rejects NaN
            return
        self._samples.setdefault(model_id, deque(maxlen=self.window)).append(seconds * 1000.0)
        medians = {m: statistics.median(s) for m, s in self._samples.items()}
        self._fleet = statistics.median(medians.values())
        k = self.prior_weight
        self._estimates = {
            m: (len(self._samples[m]) * median + k * self._fleet) / (len(self._samples[m]) + k)
            for m, median in medians.items()
        }

    def samples(self, model_id: str) -> list[float]:
        """Measured load times of `model_id` in ms, oldest first."""
        return list(self._samples.get(model_id, ()))

    @property
    def fleet_median_ms(self) -> float | None:
        return self._fleet

    def expected_ms(self, model_id: str) -> float:
        estimate = self._estimates.get(model_id)
        if estimate is not None:
            return estimate
        return self._fleet if self._fleet is not None else 1.0


class MatrixPolicy:
    """Eviction by the swap matrix, choosing the set that keeps the most valuable running models.

    A set's cost is the sum, over running models it does not contain, of the
    model's ``evict_costs`` multiplier (default 1) × its expected load time in
    ms (:class:`LoadTimes`): evicting what is slow to bring back is expensive.
    """

    def __init__(
        self,
        matrix: MatrixConfig,
        model_ids: Collection[str],
        *,
        load_times: LoadTimes | None = None,
        path: MatrixPath = MATRIX_PATH,
    ):
        self.program = compile_matrix(matrix, model_ids, path=path)
        self.load_times = load_times or LoadTimes()
        self._multipliers = {matrix.vars.get(key, key): float(cost) for key, cost in matrix.evict_costs.items()}

    def multiplier(self, model_id: str) -> float:
        return self._multipliers.get(model_id, 1.0)

    def eviction_cost(self, model_id: str) -> float:
        return self.multiplier(model_id) * self.load_times.expected_ms(model_id)

    def decide(self, target: str, running: Collection[str]) -> MatrixDecision:
        costs = {model: self.eviction_cost(model) for model in running}
        return self.program.solve(target, running, costs)

    def evictions(self, target: str, running: Collection[str]) -> list[str]:
        return self.decide(target, running).evict

    def record_load(self, model_id: str, seconds: float) -> None:
        self.load_times.record(model_id, seconds)
