"""Cost estimates from a models.dev-format catalog: lookup, arithmetic, refresh."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core.pricing import BUNDLED_SOURCE, ModelPrice, PricingCatalog, PricingError, price_tokens
from core.tokens import Usage, scrape_usage
from tests.fixtures.stream_fixtures import load_stream_fixtures


def catalog_json(**providers: dict[str, dict]) -> dict:
    """A catalog in models.dev's shape: provider → models → {id, cost}."""
    return {
        provider: {
            "id": provider,
            "name": provider.title(),
            "models": {mid: {"id": mid, "cost": cost} for mid, cost in models.items()},
        }
        for provider, models in providers.items()
    }


@pytest.fixture(scope="module")
def bundled() -> PricingCatalog:
    return PricingCatalog.load()


# ---------------------------------------------------------------- the snapshot


def test_bundled_snapshot_is_models_dev_shaped_and_covers_well_known_models(bundled):
    assert bundled.source == BUNDLED_SOURCE
    raw = json.loads((Path(__file__).parents[2] / "core" / "data" / "pricing.json").read_text())
    for provider_id, provider in raw.items():
        assert provider["id"] == provider_id
        for model_id, model in provider["models"].items():
            assert model["id"] == model_id
            assert {"input", "output"} <= set(model["cost"])
            assert {"context", "output"} <= set(model["limit"])
    for model in (
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "o3-mini",
        "claude-3-5-haiku-20241022",
        "claude-3-7-sonnet-20250219",
        "claude-sonnet-4-20250514",
        "claude-opus-4-20250514",
        "openai/gpt-4o",
        "anthropic/claude-sonnet-4",
    ):
        assert bundled.lookup(model) is not None, model


def test_bundled_prices(bundled):
    gpt4o = bundled.lookup("gpt-4o")
    assert (gpt4o.provider, gpt4o.input, gpt4o.output, gpt4o.cache_read) == ("openai", 2.5, 10.0, 1.25)
    opus = bundled.lookup("claude-opus-4-20250514")
    assert (opus.input, opus.output, opus.cache_read, opus.cache_write) == (15.0, 75.0, 1.5, 18.75)


# ---------------------------------------------------------------- lookup


@pytest.mark.parametrize(
    ("asked", "found"),
    [
        ("gpt-4o", "openai/gpt-4o"),
        ("GPT-4o", "openai/gpt-4o"),
        ("gpt-4o-2024-11-20", "openai/gpt-4o"),  # a dated snapshot not in the catalog: the model's price
        ("gpt-4o-2024-05-13", "openai/gpt-4o-2024-05-13"),  # a dated snapshot the catalog prices apart
        ("o3-mini-2025-01-31", "openai/o3-mini"),
        ("claude-3-7-sonnet-latest", "anthropic/claude-3-7-sonnet-20250219"),
        ("claude-3.7-sonnet", "anthropic/claude-3-7-sonnet-20250219"),
        ("claude-sonnet-4", "anthropic/claude-sonnet-4-20250514"),
        ("anthropic/claude-3-5-haiku-latest", "anthropic/claude-3-5-haiku-20241022"),
        ("vertex_ai/claude-3-5-sonnet@20241022", "anthropic/claude-3-5-sonnet-20241022"),
        ("openai/gpt-4o", "openrouter/openai/gpt-4o"),  # an exact catalog id wins
        ("anthropic/claude-3.7-sonnet", "openrouter/anthropic/claude-3.7-sonnet"),
        ("openrouter/anthropic/claude-opus-4", "openrouter/anthropic/claude-opus-4"),
        ("openai/gpt-4.1-mini", "openai/gpt-4.1-mini"),  # provider prefix split off
        (" gpt-4.1 ", "openai/gpt-4.1"),
    ],
)
def test_lookup_normalises_how_clients_name_models(bundled, asked, found):
    price = bundled.lookup(asked)
    assert price is not None
    assert price.key == found


@pytest.mark.parametrize(
    "asked", ["llama3", "tiny", "qwen2.5-7b-instruct", "", "gpt-5-turbo-ultra", "meta-llama/llama-3-8b"]
)
def test_unknown_models_are_not_found(bundled, asked):
    assert bundled.lookup(asked) is None


def test_first_party_provider_wins_unless_one_is_named():
    catalog = PricingCatalog(
        catalog_json(
            github_copilot={"gpt-4o": {"input": 0, "output": 0}},
            azure={"gpt-4o": {"input": 2.75, "output": 11}},
            openai={"gpt-4o": {"input": 2.5, "output": 10}},
        ),
        "test",
    )
    assert catalog.lookup("gpt-4o").provider == "openai"
    assert catalog.lookup("gpt-4o", provider="azure").input == 2.75
    assert catalog.lookup("gpt-4o", provider="nobody").provider == "openai"


def test_newest_dated_snapshot_stands_for_an_undated_name_the_catalog_lacks():
    catalog = PricingCatalog(
        catalog_json(
            anthropic={"claude-x-20240101": {"input": 1, "output": 2}, "claude-x-20250101": {"input": 3, "output": 4}}
        ),
        "test",
    )
    assert catalog.lookup("claude-x").model == "claude-x-20250101"
    assert catalog.lookup("claude-x-20240101").input == 1


def test_models_without_a_cost_are_not_priced():
    catalog = PricingCatalog(
        catalog_json(local={"free": {"input": 0, "output": 0}, "odd": {"input": "n/a"}})
        | {"meta": {"id": "meta", "models": {"nocost": {"id": "nocost"}}}},
        "test",
    )
    assert catalog.lookup("free") is not None
    assert catalog.lookup("odd") is None
    assert catalog.lookup("nocost") is None
    assert catalog.model_count == 1


def test_catalog_wrapped_in_providers_key_is_accepted():
    raw = json.dumps({"providers": catalog_json(openai={"gpt-4o": {"input": 2.5, "output": 10}})}).encode()
    assert PricingCatalog.from_bytes(raw, "wrapped").lookup("gpt-4o").output == 10


@pytest.mark.parametrize("raw", [b"not json", b"[]", b"{}", b'{"openai": {"models": {}}}'])
def test_catalogs_without_prices_are_refused(raw):
    with pytest.raises(PricingError):
        PricingCatalog.from_bytes(raw, "bad")


# ---------------------------------------------------------------- arithmetic


def test_openai_cost_prices_cached_prompt_tokens_at_the_cache_rate(bundled):
    usage = Usage(prompt_tokens=2006, completion_tokens=300, cached_tokens=1920)
    estimate = bundled.estimate("gpt-4o", usage)
    assert estimate.known
    assert estimate.usd == pytest.approx((86 * 2.5 + 1920 * 1.25 + 300 * 10) / 1e6)
    assert estimate.source == f"{BUNDLED_SOURCE}: openai/gpt-4o"


def test_anthropic_cost_prices_cache_reads_and_writes_apart(bundled):
    fixture = next(f for f in load_stream_fixtures() if f.name == "anthropic_cloud_messages")
    usage = scrape_usage(fixture.body, fixture.content_type)  # 21 fresh + 188086 written, 393 out
    estimate = bundled.estimate("claude-3-7-sonnet-20250219", usage)
    assert estimate.usd == pytest.approx((21 * 3 + 188086 * 3.75 + 393 * 15) / 1e6)


def test_missing_cache_prices_fall_back_to_the_input_price():
    price = ModelPrice("p", "m", input=1.0, output=2.0)
    usd = price_tokens(price, prompt_tokens=1000, completion_tokens=10, cached_tokens=400, cache_creation_tokens=100)
    assert usd == pytest.approx((1000 * 1.0 + 10 * 2.0) / 1e6)


def test_reasoning_tokens_use_their_own_price_only_where_the_catalog_has_one():
    plain = ModelPrice("p", "m", input=1.0, output=4.0)
    split = ModelPrice("p", "m", input=1.0, output=4.0, reasoning=8.0)
    counts = {"prompt_tokens": 0, "completion_tokens": 100, "reasoning_tokens": 60}
    assert price_tokens(plain, **counts) == pytest.approx(100 * 4.0 / 1e6)
    assert price_tokens(split, **counts) == pytest.approx((40 * 4.0 + 60 * 8.0) / 1e6)


def test_inconsistent_counts_never_price_negative_tokens():
    price = ModelPrice("p", "m", input=1.0, output=1.0, cache_read=0.5, cache_write=2.0)
    usd = price_tokens(price, prompt_tokens=10, completion_tokens=0, cached_tokens=50, cache_creation_tokens=50)
    assert usd == pytest.approx(10 * 0.5 / 1e6)


def test_unknown_model_costs_nothing_and_says_so(bundled):
    estimate = bundled.estimate("tiny", Usage(prompt_tokens=25, completion_tokens=5))
    assert (estimate.usd, estimate.known) == (0.0, False)
    assert "no price for 'tiny'" in estimate.source
    assert bundled.estimate(None, Usage(prompt_tokens=1, completion_tokens=1)).known is False


def test_unknown_tokens_give_no_amount(bundled):
    estimate = bundled.estimate("gpt-4o", Usage())
    assert estimate.usd is None
    assert estimate.known is False
    assert estimate.price is not None and "tokens unknown" in estimate.source


def test_half_known_tokens_give_a_partial_amount_marked_unknown(bundled):
    estimate = bundled.estimate("gpt-4o-mini", Usage(prompt_tokens=1000, completion_tokens=None))
    assert estimate.usd == pytest.approx(1000 * 0.15 / 1e6)
    assert not estimate.known
    assert "completion tokens unknown" in estimate.source


def test_cost_reported_by_the_upstream_wins(bundled):
    fixture = next(f for f in load_stream_fixtures() if f.name == "openrouter_chat_stream")
    usage = scrape_usage(fixture.body, fixture.content_type)
    estimate = bundled.estimate("anthropic/claude-3.7-sonnet", usage)
    assert (estimate.usd, estimate.known, estimate.source) == (0.000087, True, "reported by the upstream")
    # and the catalog agrees with what OpenRouter charged
    assert price_tokens(
        bundled.lookup("anthropic/claude-3.7-sonnet"), prompt_tokens=14, completion_tokens=3
    ) == pytest.approx(0.000087)


# ---------------------------------------------------------------- load and refresh


def test_load_from_a_file_and_from_a_missing_file(tmp_path):
    path = tmp_path / "api.json"
    path.write_text(json.dumps(catalog_json(openai={"gpt-4o": {"input": 9, "output": 9}})))
    assert PricingCatalog.load(path).lookup("gpt-4o").input == 9
    with pytest.raises(PricingError):
        PricingCatalog.load(tmp_path / "missing.json")


def test_refresh_from_a_file_replaces_the_catalog(tmp_path):
    catalog = PricingCatalog.load()
    path = tmp_path / "api.json"
    path.write_text(json.dumps(catalog_json(local={"my-model": {"input": 0.5, "output": 1}})))
    assert catalog.refresh_from(path) == 1
    assert catalog.lookup("my-model").input == 0.5
    assert catalog.lookup("gpt-4o") is None
    assert catalog.source == str(path)


def test_a_failed_refresh_keeps_the_catalog(tmp_path):
    catalog = PricingCatalog.load()
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(PricingError):
        catalog.refresh_from(broken)
    with pytest.raises(PricingError):
        catalog.refresh_from("https://models.example/api.json", http_get=_raise_connect_error)
    assert catalog.lookup("gpt-4o") is not None
    assert catalog.source == BUNDLED_SOURCE


def _raise_connect_error(url: str) -> bytes:
    raise ConnectionError(f"cannot reach {url}")


def test_refresh_from_a_url_uses_the_injected_fetcher(tmp_path):
    asked = []

    def fetch(url: str) -> bytes:
        asked.append(url)
        return json.dumps(catalog_json(openai={"gpt-4o": {"input": 1, "output": 2}})).encode()

    catalog = PricingCatalog.load()
    saved = tmp_path / "cache" / "pricing.json"
    catalog.refresh_from("https://models.dev/api.json", http_get=fetch, save_to=saved)
    assert asked == ["https://models.dev/api.json"]
    assert catalog.lookup("gpt-4o").input == 1
    assert PricingCatalog.load(saved).lookup("gpt-4o").output == 2  # the next start needs no network


class _CatalogHandler(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        if self.path != "/api.json":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture
def catalog_server() -> Iterator[str]:
    _CatalogHandler.body = json.dumps(catalog_json(openai={"gpt-4o": {"input": 7, "output": 21}})).encode()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CatalogHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_refresh_from_a_url_with_httpx_against_a_local_server(catalog_server):
    catalog = PricingCatalog.load()
    assert catalog.refresh_from(f"{catalog_server}/api.json") == 1
    assert catalog.lookup("gpt-4o").input == 7
    with pytest.raises(PricingError, match="404"):
        catalog.refresh_from(f"{catalog_server}/missing.json")
    assert catalog.lookup("gpt-4o").input == 7
