"""One port for everything: which requests the API answers, and when a frontend build can be served."""

from __future__ import annotations

import json

import pytest

from api import web
from api.web import OnePortApp, frontend_api_url, frontend_problem, routes_to_api


def scope(path: str, accept: str | None = None, type_: str = "http") -> dict:
    headers = [(b"accept", accept.encode())] if accept else []
    return {"type": type_, "path": path, "headers": headers}


@pytest.mark.parametrize(
    "path",
    [
        "/v1/chat/completions",
        "/v1/models",
        "/api/requests",
        "/api/docs",
        "/health",
        "/metrics",
        "/running",
        "/upstream/tiny/health",
        "/mcp-relays/x",
        "/sdapi/v1/txt2img",
        "/rerank",
        "/infill",
        "/completion",
        "/props",
        "/ollama/api/tags",
        "/logs/stream/proxy",
        "/api",
    ],
)
def test_api_paths_go_to_the_api(path):
    assert routes_to_api(scope(path))


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/models",
        "/requests",
        "/endpoints/",
        "/_event/",
        "/ping",
        "/assets/x.js",
        "/v1x",
        "/apiary",
        "/completions",
        "/healthz",
    ],
)
def test_dashboard_paths_and_lookalikes_go_to_reflex(path):
    assert not routes_to_api(scope(path))


def test_logs_is_the_page_for_browsers_and_the_text_log_for_everyone_else():
    assert not routes_to_api(scope("/logs", accept="text/html,application/xhtml+xml,*/*;q=0.8"))
    assert routes_to_api(scope("/logs", accept="text/plain"))
    assert routes_to_api(scope("/logs"))
    # the static frontend serves the page at /logs/ (trailing slash): same rule
    assert not routes_to_api(scope("/logs/", accept="text/html"))
    assert routes_to_api(scope("/logs/"))
    assert routes_to_api(scope("/logs/stream", accept="text/html"))


async def test_lifespan_goes_to_reflex_and_api_paths_never_do():
    seen: list[tuple[str, str]] = []

    def recorder(name):
        async def app(scope, receive, send):
            seen.append((name, scope["type"]))

        return app

    app = OnePortApp(api=recorder("api"), dashboard=recorder("dashboard"))
    await app(scope("/health", type_="lifespan"), None, None)
    await app(scope("/v1/chat/completions"), None, None)
    await app(scope("/requests"), None, None)
    assert seen == [("dashboard", "lifespan"), ("api", "http"), ("dashboard", "http")]


@pytest.fixture
def web_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(web, "WEB_DIR", tmp_path / ".web")
    monkeypatch.setattr(web, "STAMP_PATH", tmp_path / ".web/switchyard-frontend.json")
    monkeypatch.delenv("REFLEX_API_URL", raising=False)
    return tmp_path / ".web"


def write_build(web_dir, api_url: str, sources: str) -> None:
    (web_dir / "build/client").mkdir(parents=True)
    (web_dir / "build/client/index.html").write_text("<html></html>")
    (web_dir / "switchyard-frontend.json").write_text(json.dumps({"api_url": api_url, "sources": sources}))


def test_no_build_means_api_only(web_dir):
    assert frontend_problem(3000) == "the frontend is not built"


def test_a_build_is_served_only_on_the_port_it_was_made_for(web_dir):
    write_build(web_dir, "http://localhost:3000", web.sources_digest())
    assert frontend_problem(3000) is None
    assert "built for http://localhost:3000, not http://localhost:4000" in frontend_problem(4000)


def test_a_build_from_other_sources_is_stale(web_dir):
    write_build(web_dir, "http://localhost:3000", "0123456789abcdef")
    assert frontend_problem(3000) == "the dashboard sources changed since the frontend was built"


def test_reflex_api_url_overrides_the_port_for_deployments_behind_a_proxy(web_dir, monkeypatch):
    monkeypatch.setenv("REFLEX_API_URL", "https://gateway.example.com")
    assert frontend_api_url(3000) == "https://gateway.example.com"
    write_build(web_dir, "https://gateway.example.com", web.sources_digest())
    assert frontend_problem(8080) is None


def test_build_reuses_a_current_build_without_running_anything(web_dir, monkeypatch, tmp_path):
    monkeypatch.setattr(web, "TOOLS_DIR", tmp_path / ".tools")
    write_build(web_dir, "http://localhost:3000", web.sources_digest())

    def must_not_run(*args, **kwargs):
        raise AssertionError("a current build must not be rebuilt")

    monkeypatch.setattr(web, "_run_streaming", must_not_run)
    result = web.build_frontend(3000)
    assert result.reused and result.api_url == "http://localhost:3000"
