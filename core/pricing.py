"""What a request cost, from a pricing catalog in models.dev's format.

The catalog is models.dev's ``api.json``: providers → ``models`` → model id →
``cost: {input, output, cache_read, cache_write[, reasoning]}`` in USD per
million tokens. (The top level may also be wrapped in ``{"providers": ...}``.)
A snapshot ships with the package as ``core/data/pricing.json``; it is a small,
hand-made extract for well-known models, written in that format because there is
no network where it was built. :meth:`PricingCatalog.refresh_from` replaces it
with a fuller catalog from a file or URL (models.dev's own
``https://models.dev/api.json`` works as is).

Lookup is forgiving about how a client spells a model: exact ids first, then a
provider prefix (``openai/gpt-4o`` → provider ``openai``, model ``gpt-4o``),
then a normalised id that ignores case, a dated or ``-latest`` suffix
(``gpt-4o-2024-11-20``, ``claude-3-7-sonnet-20250219``, ``...@20240620``) and
dots versus dashes (``claude-3.7-sonnet``). When several providers list a model
the first-party one wins (:data:`PREFERRED_PROVIDERS`), unless a provider is
named.

Cost uses every count the usage reports: uncached prompt tokens at ``input``,
cache reads at ``cache_read``, cache writes at ``cache_write`` (each falling back
to ``input`` when the catalog has no such price), completion tokens at
``output`` (reasoning tokens at ``reasoning`` where the catalog prices them
apart). A cost the upstream reported itself (OpenRouter's ``usage.cost``) wins.
An unknown model costs nothing and the estimate says so (``known=False``).
Long-context tiers (models.dev's ``context_over_200k``) are not applied.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from core.tokens import Usage

PER_TOKENS = 1_000_000
PREFERRED_PROVIDERS = ("openai", "anthropic", "google", "deepseek", "mistral", "xai", "openrouter")
BUNDLED_SOURCE = "bundled snapshot"

_DATE_SUFFIX = re.compile(r"(?:[-@](?:\d{4}-\d{2}-\d{2}|\d{8})|-latest)$")


class PricingError(ValueError):
    """A catalog could not be read or holds no priced model."""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """One catalog entry; prices are USD per million tokens, None where the catalog has none."""

    provider: str
    model: str
    input: float | None
    output: float | None
    cache_read: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """``usd`` is None when the model is priced but the tokens are unknown; 0.0 for an unpriced model."""

    usd: float | None
    known: bool
    source: str
    price: ModelPrice | None = None


@dataclass(frozen=True, slots=True)
class _Index:
    by_provider: dict[str, dict[str, ModelPrice]]  # provider → lowercased id → price
    normal_by_provider: dict[str, dict[str, ModelPrice]]  # provider → normalised id → price
    order: tuple[str, ...]  # providers, preferred first
    count: int


class PricingCatalog:
    """A parsed catalog; look prices up and estimate costs. Refreshing swaps the whole index at once."""

    def __init__(self, catalog: Mapping[str, Any], source: str):
        self._index = _build_index(catalog)
        self.source = source

    # ---------------------------------------------------------- construction

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> PricingCatalog:
        """The catalog at ``path``, or the bundled snapshot when ``path`` is None."""
        if path is None:
            raw = resources.files("core").joinpath("data/pricing.json").read_bytes()
            return cls.from_bytes(raw, BUNDLED_SOURCE)
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise PricingError(f"cannot read pricing catalog {path}: {exc}") from exc
        return cls.from_bytes(raw, str(path))

    @classmethod
    def from_bytes(cls, raw: bytes, source: str) -> PricingCatalog:
        return cls(_parse(raw, source), source)

    def refresh_from(
        self,
        path_or_url: str | os.PathLike[str],
        http_get: Callable[[str], bytes] | None = None,
        *,
        save_to: str | os.PathLike[str] | None = None,
    ) -> int:
        """Replace the catalog with the one at a path or an http(s) URL; answers how many models are priced.

        ``http_get(url) -> bytes`` fetches URLs (default: httpx). On any failure the
        current catalog stays in place and :class:`PricingError` is raised. With
        ``save_to`` the fetched bytes are also written there (atomically), so the
        next start can :meth:`load` them without the network.
        """
        location = os.fspath(path_or_url)
        if location.startswith(("http://", "https://")):
            try:
                raw = (http_get or _http_get)(location)
            except Exception as exc:  # any transport error: keep the catalog we have
                raise PricingError(f"cannot fetch pricing catalog {location}: {exc}") from exc
        else:
            try:
                raw = Path(location).read_bytes()
            except OSError as exc:
                raise PricingError(f"cannot read pricing catalog {location}: {exc}") from exc
        index = _build_index(_parse(raw, location))
        if save_to is not None:
            _write_atomically(Path(save_to), raw)
        self._index = index
        self.source = location
        return index.count

    # ---------------------------------------------------------------- lookup

    @property
    def model_count(self) -> int:
        return self._index.count

    def providers(self) -> tuple[str, ...]:
        return self._index.order

    def lookup(self, model: str, provider: str | None = None) -> ModelPrice | None:
        """The price of ``model`` (as a client or upstream names it), or None if the catalog lacks it."""
        model = model.strip()
        if not model:
            return None
        index = self._index
        wanted = model.lower()
        normal = _normalise(wanted)
        provider = provider.lower() if provider else None
        if provider and provider in index.by_provider:
            found = index.by_provider[provider].get(wanted) or index.normal_by_provider[provider].get(normal)
            if found:
                return found
        found = _first(index.by_provider[p].get(wanted) for p in index.order)
        if found:
            return found
        if "/" in wanted:
            head, rest = wanted.split("/", 1)
            if head in index.by_provider:
                found = self.lookup(rest, head)
                if found and found.provider == head:
                    return found
        found = _first(index.normal_by_provider[p].get(normal) for p in index.order)
        if found:
            return found
        if "/" in wanted:
            return self.lookup(wanted.rsplit("/", 1)[1], provider)
        return None

    def estimate(self, model: str | None, usage: Usage, provider: str | None = None) -> CostEstimate:
        reported = getattr(usage, "reported_cost_usd", None)
        if reported is not None:
            return CostEstimate(usd=float(reported), known=True, source="reported by the upstream")
        price = self.lookup(model, provider) if model else None
        if price is None:
            return CostEstimate(usd=0.0, known=False, source=f"no price for {model!r} in {self.source}")
        prompt = usage.prompt_tokens
        completion = usage.completion_tokens
        if prompt is None and completion is None:
            return CostEstimate(
                usd=None, known=False, source=f"tokens unknown ({self.source}: {price.key})", price=price
            )
        usd = price_tokens(
            price,
            prompt_tokens=prompt or 0,
            completion_tokens=completion or 0,
            cached_tokens=usage.cached_tokens or 0,
            cache_creation_tokens=getattr(usage, "cache_creation_tokens", None) or 0,
            reasoning_tokens=getattr(usage, "reasoning_tokens", None) or 0,
        )
        if prompt is None or completion is None:
            missing = "prompt" if prompt is None else "completion"
            return CostEstimate(
                usd=usd, known=False, source=f"{missing} tokens unknown ({self.source}: {price.key})", price=price
            )
        return CostEstimate(usd=usd, known=True, source=f"{self.source}: {price.key}", price=price)


def price_tokens(
    price: ModelPrice,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int = 0,
    cache_creation_tokens: int = 0,
    reasoning_tokens: int = 0,
) -> float:
    """USD for these counts. ``prompt_tokens`` includes cached and cache-written tokens; completion includes reasoning."""
    base_input = price.input or 0.0
    cached = max(0, min(cached_tokens, prompt_tokens))
    written = max(0, min(cache_creation_tokens, prompt_tokens - cached))
    fresh = prompt_tokens - cached - written
    reasoning = max(0, min(reasoning_tokens, completion_tokens)) if price.reasoning is not None else 0
    total = (
        fresh * base_input
        + cached * (price.cache_read if price.cache_read is not None else base_input)
        + written * (price.cache_write if price.cache_write is not None else base_input)
        + (completion_tokens - reasoning) * (price.output or 0.0)
        + reasoning * (price.reasoning or 0.0)
    )
    return total / PER_TOKENS


# -------------------------------------------------------------- internals


def _parse(raw: bytes, source: str) -> Mapping[str, Any]:
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise PricingError(f"pricing catalog {source} is not JSON: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("providers"), dict):
        data = data["providers"]
    if not isinstance(data, dict):
        raise PricingError(f"pricing catalog {source} is not an object of providers")
    return data


def _build_index(catalog: Mapping[str, Any]) -> _Index:
    by_provider: dict[str, dict[str, ModelPrice]] = {}
    normal_by_provider: dict[str, dict[str, ModelPrice]] = {}
    count = 0
    for provider_key, provider in catalog.items():
        if not isinstance(provider, dict) or not isinstance(provider.get("models"), dict):
            continue
        provider_id = str(provider.get("id") or provider_key).lower()
        exact: dict[str, ModelPrice] = {}
        normal: dict[str, ModelPrice] = {}
        for model_key, model in provider["models"].items():
            price = _price(provider_id, model_key, model)
            if price is None:
                continue
            model_id = price.model.lower()
            exact[model_id] = price
            key = _normalise(model_id)
            current = normal.get(key)
            if current is None or _stands_for_model(model_id, current.model.lower()):
                normal[key] = price
            count += 1
        if exact:
            by_provider.setdefault(provider_id, {}).update(exact)
            normal_by_provider.setdefault(provider_id, {}).update(normal)
    if not count:
        raise PricingError("pricing catalog holds no priced model")
    preferred = [p for p in PREFERRED_PROVIDERS if p in by_provider]
    order = tuple(preferred + [p for p in by_provider if p not in preferred])
    return _Index(by_provider=by_provider, normal_by_provider=normal_by_provider, order=order, count=count)


def _price(provider_id: str, model_key: str, model: Any) -> ModelPrice | None:
    if not isinstance(model, dict):
        return None
    cost = model.get("cost")
    if not isinstance(cost, dict):
        return None
    figures = {name: _usd(cost.get(name)) for name in ("input", "output", "cache_read", "cache_write", "reasoning")}
    if figures["input"] is None and figures["output"] is None:
        return None
    return ModelPrice(provider=provider_id, model=str(model.get("id") or model_key), **figures)


def _usd(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return None
    return float(value)


def _normalise(model_id: str) -> str:
    model_id = model_id.strip().lower()
    while True:
        stripped = _DATE_SUFFIX.sub("", model_id)
        if stripped == model_id or not stripped:
            break
        model_id = stripped
    return model_id.replace(".", "-").replace("_", "-")


def _stands_for_model(candidate: str, current: str) -> bool:
    """Of two ids that normalise alike, the undated alias names the model; else the newest dated snapshot."""
    candidate_dated = _DATE_SUFFIX.search(candidate) is not None
    current_dated = _DATE_SUFFIX.search(current) is not None
    if candidate_dated != current_dated:
        return not candidate_dated
    return candidate > current


def _first(candidates: Iterable[ModelPrice | None]) -> ModelPrice | None:
    for candidate in candidates:
        if candidate is not None:
            return candidate
    return None


def _http_get(url: str) -> bytes:
    import httpx

    response = httpx.get(url, timeout=30.0, follow_redirects=True)
    response.raise_for_status()
    return response.content


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
