"""The max-loaded cap (``library.maxLoaded``): an eviction policy wrapper with least-recently-used eviction.

The wrapped policy (groups or the matrix) still decides what must stop for a model to start. On top of that,
at most ``max_loaded`` local models may be loaded (starting or ready) at once. When starting one more would
break the cap, the least recently used loaded models are evicted, but only those the caller may evict:

* an **admin** start (``POST /api/models/{id}/load``, the library's load action, a startup preload) may evict
  any counted model, models started by API clients first;
* the **Ollama API** may evict only models that API clients started (Ollama clients expect their model to
  replace another one, but not one an operator loaded on purpose);
* any other **API** request (OpenAI, Anthropic, ``/upstream``) never evicts under the cap: it fails with
  :class:`CapacityError` (answered 503) when the cap is full.

Embedding models never count towards the cap and are never evicted by it: they are small and serve
retrieval next to a chat model.

Models generated from the model library (`managed`) are outside the wrapped policy's domain: groups and the
matrix describe hand-written config entries; the cap alone decides for library models.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Literal

from core.config.schema import ModelConfig
from core.swap.policy import EvictionPolicy

#: llama-server flags that make a server an embedding server
EMBEDDING_FLAGS = frozenset({"--embedding", "--embeddings"})

Origin = Literal["admin", "ollama", "api"]
ORIGINS: tuple[Origin, ...] = ("admin", "ollama", "api")


def is_embedding_model(model: ModelConfig) -> bool:
    """An embedding server: its command has llama-server's ``--embedding(s)`` flag, or its metadata says so
    (``metadata: {embedding: true}`` for other servers)."""
    if model.metadata.get("embedding") is True:
        return True
    try:
        return any(arg in EMBEDDING_FLAGS for arg in model.args)
    except ValueError:
        return False


class CapacityError(Exception):
    """The max-loaded cap is full and the caller may not evict anything (answered 503)."""

    def __init__(self, model_id: str, max_loaded: int, loaded: Collection[str], origin: str):
        names = ", ".join(sorted(loaded)) or "none"
        if origin == "ollama":
            why = "the Ollama API may only replace models that API clients loaded"
        else:
            why = "API requests never evict loaded models"
        super().__init__(
            f"cannot load model {model_id}: {len(loaded)} of at most {max_loaded} models are loaded ({names}) "
            f"and {why}; unload one (POST /api/models/unload/<id>) or load it from the admin side"
        )
        self.model_id = model_id
        self.max_loaded = max_loaded


class LoadedModelCap:
    """Wraps an eviction policy with the max-loaded cap and LRU eviction (see the module docstring).

    `last_used(model)` is a monotonic time of the model's last request (None: never used, oldest);
    `started_by(model)` is the origin of the request that loaded it (``"admin"`` or an API origin).
    """

    def __init__(
        self,
        inner: EvictionPolicy,
        max_loaded: int,
        *,
        last_used: Callable[[str], float | None],
        started_by: Callable[[str], str | None],
        uncounted: Collection[str] = (),
        managed: Collection[str] = (),
    ):
        self.inner = inner
        self.max_loaded = max_loaded
        self._last_used = last_used
        self._started_by = started_by
        self.uncounted = frozenset(uncounted)
        self.managed = frozenset(managed)

    def evictions(self, target: str, running: Collection[str]) -> list[str]:
        """The plain policy protocol: treated as an API request (never evicts under the cap)."""
        return self.evictions_for(target, running, "api")

    def evictions_for(self, target: str, running: Collection[str], origin: str) -> list[str]:
        """Models to stop before `target` starts, for a request from `origin`; raises :class:`CapacityError`."""
        if target in self.managed:
            evict: list[str] = []
        else:
            evict = list(self.inner.evictions(target, [m for m in running if m not in self.managed]))
        if self.max_loaded <= 0 or target in self.uncounted:
            return evict
        staying = [m for m in running if m != target and m not in evict and m not in self.uncounted]
        overflow = len(staying) + 1 - self.max_loaded
        if overflow <= 0:
            return evict
        candidates = self._evictable(staying, origin)
        if len(candidates) < overflow:
            raise CapacityError(target, self.max_loaded, staying, origin)
        return evict + candidates[:overflow]

    def _evictable(self, loaded: list[str], origin: str) -> list[str]:
        """`loaded` models the origin may evict, in eviction order: API-started first, then least recently used."""
        if origin == "admin":
            allowed = list(loaded)
        elif origin == "ollama":
            allowed = [m for m in loaded if self._started_by(m) != "admin"]
        else:
            allowed = []

        def order(model: str) -> tuple[int, float]:
            used = self._last_used(model)
            return (1 if self._started_by(model) == "admin" else 0, float("-inf") if used is None else used)

        return sorted(allowed, key=order)

    def record_load(self, model_id: str, seconds: float) -> None:
        self.inner.record_load(model_id, seconds)
