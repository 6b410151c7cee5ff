"""Routing policy: an ordered list of rules, compiled once, evaluated on every request in microseconds.

Evaluation, precisely:

1. Rules are walked in ascending ``position`` (ties broken by ``id``); disabled rules are skipped.
2. A rule *matches* when every condition it sets holds (an unset condition always holds):
   path glob, model pattern, API key id, and every header matcher.
3. Every matching rule counts one hit, whatever its action.
4. A matching rule with ``max_body_bytes`` set rejects a larger body with 413, before its action.
5. A matching ``continue`` rule contributes its credential bindings and evaluation goes on.
6. The first matching rule whose action is ``rewrite``, ``reject`` or ``route`` decides; evaluation stops.
   Its bindings are added after those of the ``continue`` rules before it (a later binding of the same header wins).
7. When no rule decides, the decision is ``continue``: the request proceeds as requested, with the bindings of
   any ``continue`` rules that matched.

Patterns. A pattern is a glob (``fnmatch`` syntax, case-sensitive, ``*`` also matches ``/``), or a regular
expression when prefixed ``re:`` (searched, not anchored: write ``re:^qwen.*-instruct$`` for a whole-name match).
A rule's model condition never matches a request without a model; a header matcher never matches an absent
header.

Facts. :class:`RequestFacts` carries what the rules look at; header names are lower case, as ASGI delivers them.

Sampling overrides and system-prompt injection, which rewrite request bodies for a model or a key, live here too:
they are the body-level half of policy.

Rules, targets and overrides are plain frozen dataclasses that map to database rows (nested ones to JSON
columns); ``msgspec.convert(payload, PolicyRule)`` builds and type-checks one from an admin API payload, and
:func:`validate_rule` reports what else is wrong with it.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from core.vault import CredentialBinding

ActionKind = Literal["continue", "rewrite", "reject", "route"]
TargetKind = Literal["local", "peer", "upstream"]
BodyShape = Literal["openai_chat", "openai_completions", "openai_responses", "anthropic_messages"]
REGEX_PREFIX = "re:"
BODY_TOO_LARGE = 413


# ---------------------------------------------------------------------------------------------------- patterns


def compile_pattern(pattern: str) -> Callable[[str], bool]:
    """A predicate for one glob or ``re:`` pattern; raises ``re.error`` for a bad regular expression."""
    if pattern.startswith(REGEX_PREFIX):
        search = re.compile(pattern[len(REGEX_PREFIX) :]).search
        return lambda value: search(value) is not None
    if pattern == "*":
        return lambda value: True
    if not any(c in pattern for c in "*?["):
        return lambda value: value == pattern
    match = re.compile(fnmatch.translate(pattern)).match
    return lambda value: match(value) is not None


# ---------------------------------------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class HeaderMatcher:
    name: str  # any case; compared lower case
    pattern: str = "*"  # glob or re: pattern over the header's value


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """Conditions of a rule; empty ones always hold."""

    path: str = ""  # glob or re: over the request path, e.g. "/v1/chat/*"
    model: str = ""  # glob or re: over the requested model
    key_ids: tuple[str, ...] = ()  # the request's API key id is one of these
    headers: tuple[HeaderMatcher, ...] = ()


@dataclass(frozen=True, slots=True)
class RouteTarget:
    """Where a ``route`` rule sends a request.

    * ``local``: `value` is a local model id or alias that serves the request (empty: the requested model, but
      never a peer).
    * ``peer``: `value` is a peer id.
    * ``upstream``: a direct HTTP(S) upstream at `base_url` (``https://api.anthropic.com``); `value` names it in
      logs.

    `model`, when set, is the model name sent to the target (otherwise the requested one, or `value` for local).
    `auth_passthrough` forwards the client's own ``Authorization``/``x-api-key`` instead of stripping them;
    `insecure_tls` skips certificate verification for this upstream.
    """

    kind: TargetKind
    value: str = ""
    model: str = ""
    base_url: str = ""
    auth_passthrough: bool = False
    insecure_tls: bool = False


@dataclass(frozen=True, slots=True)
class PolicyRule:
    id: str
    position: int = 0
    enabled: bool = True
    name: str = ""
    match: RuleMatch = RuleMatch()
    action: ActionKind = "continue"
    rewrite_model: str = ""  # action "rewrite"
    reject_status: int = 403  # action "reject"
    reject_message: str = "request rejected by policy"
    target: RouteTarget | None = None  # action "route"
    bindings: tuple[CredentialBinding, ...] = ()
    max_body_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    rule_id: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"rule {self.rule_id}: {self.field}: {self.message}"


class PolicyError(ValueError):
    """Rules that cannot be compiled; `problems` lists every one found."""

    def __init__(self, problems: list[PolicyProblem]):
        self.problems = problems
        super().__init__("; ".join(map(str, problems)))


def validate_rule(rule: PolicyRule) -> list[PolicyProblem]:
    """Everything wrong with one rule (empty when it compiles), for clear admin API errors."""
    problems: list[PolicyProblem] = []

    def problem(where: str, message: str) -> None:
        problems.append(PolicyProblem(rule.id, where, message))

    def check_pattern(where: str, pattern: str) -> None:
        try:
            compile_pattern(pattern)
        except re.error as exc:
            problem(where, f"invalid regular expression {pattern[len(REGEX_PREFIX) :]!r}: {exc}")

    if not rule.id:
        problem("id", "a rule needs an id")
    if rule.match.path:
        check_pattern("match.path", rule.match.path)
    if rule.match.model:
        check_pattern("match.model", rule.match.model)
    for index, header in enumerate(rule.match.headers):
        if not header.name.strip():
            problem(f"match.headers[{index}].name", "a header matcher needs a header name")
        check_pattern(f"match.headers[{index}].pattern", header.pattern)
    if rule.action == "rewrite" and not rule.rewrite_model:
        problem("rewrite_model", "a rewrite rule needs the model to rewrite to")
    if rule.action == "reject" and not 400 <= rule.reject_status <= 599:
        problem("reject_status", f"must be an HTTP error status (400-599), got {rule.reject_status}")
    if rule.action == "route":
        target = rule.target
        if target is None:
            problem("target", "a route rule needs a target")
        elif target.kind == "peer" and not target.value:
            problem("target.value", "a peer target needs the peer id")
        elif target.kind == "upstream" and not re.match(r"https?://[^/\s]+", target.base_url):
            problem("target.base_url", f"an upstream target needs an http(s):// base URL, got {target.base_url!r}")
    if rule.max_body_bytes is not None and rule.max_body_bytes < 0:
        problem("max_body_bytes", "must be zero or more")
    for index, binding in enumerate(rule.bindings):
        for message in binding.problems():
            problem(f"bindings[{index}]", message)
    return problems


# ---------------------------------------------------------------------------------------------------- evaluation


@dataclass(frozen=True, slots=True)
class RequestFacts:
    path: str
    model: str | None = None
    key_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body_size: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy decided for one request; `rule_id`, `action` and `model` go on the log row.

    * `rule_id`: the deciding rule; for a ``continue`` decision, the last ``continue`` rule that matched, or None.
    * `model`: the model the request continues with (rewritten, or the route's model); the requested one otherwise.
    * `matched`: ids of every rule that matched, in order (each counted one hit).
    """

    action: ActionKind
    model: str | None
    rule_id: str | None = None
    rule_name: str = ""
    rewritten: bool = False
    target: RouteTarget | None = None
    reject_status: int | None = None
    reject_message: str | None = None
    bindings: tuple[CredentialBinding, ...] = ()
    matched: tuple[str, ...] = ()

    @property
    def hit(self) -> bool:
        return bool(self.matched)

    @property
    def injects_credentials(self) -> bool:
        """A decision that injects credentials must only be served to a request with a valid Switchyard key."""
        return bool(self.bindings)


class RuleHits:
    """Hit counts per rule id, kept in memory and drained by whoever writes them to the database.

    Pass the same instance to successive :func:`compile_policy` calls so no hit is lost when rules change.
    """

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def record(self, rule_id: str) -> None:
        self._counts[rule_id] += 1

    def peek(self) -> dict[str, int]:
        return dict(self._counts)

    def drain(self) -> dict[str, int]:
        """The counts since the last drain (to add to the stored totals), and start again from zero."""
        counts, self._counts = self._counts, Counter()
        return dict(counts)


Predicate = Callable[[RequestFacts], bool]


def _compile_conditions(match: RuleMatch) -> tuple[Predicate, ...]:
    """One predicate per set condition, cheapest first."""
    preds: list[Predicate] = []
    if match.key_ids:
        key_ids = frozenset(match.key_ids)
        preds.append(lambda facts: facts.key_id in key_ids)
    if match.path:
        path_ok = compile_pattern(match.path)
        preds.append(lambda facts: path_ok(facts.path))
    if match.model:
        model_ok = compile_pattern(match.model)
        preds.append(lambda facts: facts.model is not None and model_ok(facts.model))
    for header in match.headers:
        name = header.name.strip().lower()
        value_ok = compile_pattern(header.pattern)

        def header_pred(facts: RequestFacts, name: str = name, value_ok: Callable[[str], bool] = value_ok) -> bool:
            value = facts.headers.get(name)
            return value is not None and value_ok(value)

        preds.append(header_pred)
    return tuple(preds)


class _CompiledRule:
    __slots__ = ("conditions", "rule")

    def __init__(self, rule: PolicyRule):
        self.rule = rule
        self.conditions = _compile_conditions(rule.match)


class CompiledPolicy:
    """An immutable, precompiled snapshot of the rules; build a new one when they change and swap the reference."""

    __slots__ = ("_rules", "hits", "rules")

    def __init__(self, rules: Iterable[PolicyRule], hits: RuleHits):
        ordered = sorted((r for r in rules if r.enabled), key=lambda r: (r.position, r.id))
        self.rules = tuple(ordered)
        self._rules = tuple(_CompiledRule(r) for r in ordered)
        self.hits = hits

    def __len__(self) -> int:
        return len(self._rules)

    def evaluate(self, facts: RequestFacts) -> Decision:
        matched: list[str] = []
        bindings: tuple[CredentialBinding, ...] = ()
        last_continue: PolicyRule | None = None
        record_hit = self.hits.record
        for compiled in self._rules:
            for condition in compiled.conditions:
                if not condition(facts):
                    break
            else:
                rule = compiled.rule
                record_hit(rule.id)
                matched.append(rule.id)
                if rule.max_body_bytes is not None and facts.body_size > rule.max_body_bytes:
                    return Decision(
                        action="reject",
                        model=facts.model,
                        rule_id=rule.id,
                        rule_name=rule.name,
                        reject_status=BODY_TOO_LARGE,
                        reject_message=(
                            f"request body of {facts.body_size} bytes exceeds the {rule.max_body_bytes}-byte limit "
                            f"of policy rule {rule.name or rule.id!r}"
                        ),
                        matched=tuple(matched),
                    )
                if rule.bindings:
                    bindings += rule.bindings
                if rule.action == "continue":
                    last_continue = rule
                    continue
                return _decide(rule, facts, bindings, tuple(matched))
        return Decision(
            action="continue",
            model=facts.model,
            rule_id=last_continue.id if last_continue else None,
            rule_name=last_continue.name if last_continue else "",
            bindings=bindings,
            matched=tuple(matched),
        )


def _decide(
    rule: PolicyRule, facts: RequestFacts, bindings: tuple[CredentialBinding, ...], matched: tuple[str, ...]
) -> Decision:
    if rule.action == "reject":
        return Decision(
            action="reject",
            model=facts.model,
            rule_id=rule.id,
            rule_name=rule.name,
            reject_status=rule.reject_status,
            reject_message=rule.reject_message,
            matched=matched,
        )
    if rule.action == "rewrite":
        model: str | None = rule.rewrite_model
        target = None
    else:
        target = rule.target
        model = facts.model
        if target is not None:
            if target.model:
                model = target.model
            elif target.kind == "local" and target.value:
                model = target.value
    return Decision(
        action=rule.action,
        model=model,
        rule_id=rule.id,
        rule_name=rule.name,
        rewritten=model != facts.model,
        target=target,
        bindings=bindings,
        matched=matched,
    )


def compile_policy(rules: Iterable[PolicyRule], hits: RuleHits | None = None) -> CompiledPolicy:
    """Validate and precompile `rules`; raises :class:`PolicyError` listing every problem (duplicate ids too)."""
    rules = list(rules)
    problems = [p for rule in rules for p in validate_rule(rule)]
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            problems.append(PolicyProblem(rule.id, "id", "two rules share this id"))
        seen.add(rule.id)
    if problems:
        raise PolicyError(problems)
    return CompiledPolicy(rules, hits if hits is not None else RuleHits())


# ---------------------------------------------------------------------------------------------------- bodies


def body_shape(path: str) -> BodyShape | None:
    """The request body shape of an endpoint, for overrides and prompt injection (None: not a text endpoint)."""
    return _SHAPES.get(path)


_SHAPES: dict[str, BodyShape] = {
    "/v1/chat/completions": "openai_chat",
    "/v1/completions": "openai_completions",
    "/completion": "openai_completions",
    "/v1/responses": "openai_responses",
    "/v1/messages": "anthropic_messages",
}


@dataclass(frozen=True, slots=True)
class SamplingOverrides:
    """Sampling parameters forced on every request for a model; None leaves the client's value alone.

    OpenAI-shaped bodies get every set field (llama.cpp, vLLM and other OpenAI-compatible servers read
    ``top_k`` and ``repeat_penalty`` as extensions). Anthropic Messages bodies get only the fields that API
    defines — ``temperature``, ``top_p``, ``top_k`` — because it rejects unknown sampling fields.
    """

    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repeat_penalty: float | None = None

    @property
    def empty(self) -> bool:
        return all(getattr(self, name) is None for name in _OPENAI_SAMPLING)

    def apply(self, body: dict[str, Any], shape: BodyShape) -> tuple[str, ...]:
        """Set the overridden fields on `body` in place; returns the names set."""
        names = _ANTHROPIC_SAMPLING if shape == "anthropic_messages" else _OPENAI_SAMPLING
        applied = []
        for name in names:
            value = getattr(self, name)
            if value is not None:
                body[name] = value
                applied.append(name)
        return tuple(applied)


_OPENAI_SAMPLING = ("temperature", "top_k", "top_p", "presence_penalty", "frequency_penalty", "repeat_penalty")
_ANTHROPIC_SAMPLING = ("temperature", "top_p", "top_k")


def inject_system_prompt(body: dict[str, Any], prompt: str, shape: BodyShape) -> bool:
    """Put a key's system prompt in front of the client's instructions, in place; returns whether it did.

    * ``openai_chat``: a leading ``system``/``developer`` message gets the prompt prepended (as a first text part
      when its content is a list); otherwise a new system message is inserted first. One leading system message
      is kept because many chat templates refuse a system message anywhere but first.
    * ``openai_responses``: ``instructions`` becomes the prompt, followed by the client's instructions.
    * ``anthropic_messages``: ``system`` as a string gets the prompt prepended; as a block list it gets a text
      block first (the client's ``cache_control`` blocks are kept as they are).
    * ``openai_completions`` has no system role: nothing is injected.

    A body whose field has an unexpected type is left untouched (the upstream will report it).
    """
    if not prompt:
        return False
    if shape == "openai_chat":
        messages = body.get("messages")
        if not isinstance(messages, list):
            return False
        first = messages[0] if messages else None
        if isinstance(first, dict) and first.get("role") in ("system", "developer"):
            content = first.get("content")
            if isinstance(content, str):
                first["content"] = _join(prompt, content)
                return True
            if isinstance(content, list):
                content.insert(0, {"type": "text", "text": prompt})
                return True
            if content is None:
                first["content"] = prompt
                return True
            return False
        messages.insert(0, {"role": "system", "content": prompt})
        return True
    if shape == "openai_responses":
        existing = body.get("instructions")
        if existing is None or isinstance(existing, str):
            body["instructions"] = _join(prompt, existing or "")
            return True
        return False
    if shape == "anthropic_messages":
        system = body.get("system")
        if system is None or isinstance(system, str):
            body["system"] = _join(prompt, system or "")
            return True
        if isinstance(system, list):
            system.insert(0, {"type": "text", "text": prompt})
            return True
        return False
    return False


def _join(prompt: str, existing: str) -> str:
    return f"{prompt}\n\n{existing}" if existing else prompt
