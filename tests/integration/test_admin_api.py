"""The admin API against the real gateway: models, requests, system, settings, maintenance, config, events."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import yaml

from core.capture import compress
from tests.integration.conftest import fake_cmd
from tests.servers import ADMIN_HEADERS, free_port, wait_until

MODELS = f"""
models:
  org/m:
    cmd: {fake_cmd()}
    aliases: [m-alias]
    name: The M model
  other:
    cmd: {fake_cmd()}
groups:
  both: {{swap: false, exclusive: false, members: [org/m, other]}}
"""


@pytest.fixture
def gateway(gateway_factory):
    return gateway_factory(MODELS)


def admin(gateway, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, gateway.base_url + path, headers={**ADMIN_HEADERS, **(headers or {})}, timeout=30, **kwargs
    )


def chat(gateway, model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(gateway.base_url + "/v1/chat/completions", json=body, timeout=30)


def sql_time(value: datetime) -> str:
    """created_at as the SQLite database stores it (naive UTC)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


def database(gateway) -> sqlite3.Connection:
    return sqlite3.connect(Path(gateway.workdir) / "switchyard.db", timeout=10)


def insert_request(gateway, created_at: datetime, **values: Any) -> int:
    row = {
        "method": "POST",
        "path": "/v1/chat/completions",
        "status_code": 200,
        "duration_ms": 5.0,
        "streamed": 0,
        "cost_known": 0,
        **values,
        "created_at": sql_time(created_at),
    }
    with database(gateway) as db:
        cursor = db.execute(
            f"INSERT INTO request_logs ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})", list(row.values())
        )
        return int(cursor.lastrowid)


class SseReader:
    """Reads an SSE endpoint in a thread and keeps (arrival time, event, data)."""

    def __init__(self, url: str):
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.connected = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()
        assert self.connected.wait(10), "SSE stream did not open"

    def _run(self, url: str) -> None:
        with httpx.stream("GET", url, headers=ADMIN_HEADERS, timeout=30) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            self.connected.set()
            event = "message"
            for line in response.iter_lines():
                if self._stop:
                    return
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    self.events.append((time.monotonic(), event, msgspec.json.decode(line[6:])))

    def first(self, event: str, **match: Any) -> tuple[float, dict[str, Any]] | None:
        for at, name, data in list(self.events):
            if name == event and all(data.get(k) == v for k, v in match.items()):
                return at, data
        return None

    def close(self) -> None:
        self._stop = True


# ------------------------------------------------------------------------------ guard


def test_admin_endpoints_need_a_session_or_an_admin_key(gateway):
    protected = [
        "/api/system",
        "/api/models",
        "/api/requests",
        "/api/settings",
        "/api/config",
        "/api/gpu",
        "/running",
        "/logs",
        "/api/profiles",
    ]
    for path in protected:
        response = httpx.get(gateway.base_url + path, timeout=10)
        assert response.status_code == 401, path
        assert response.json()["status_code"] == 401
        assert httpx.get(gateway.base_url + path, headers={"authorization": "Bearer wrong"}).status_code == 401
        assert admin(gateway, "GET", path).status_code == 200, path
    assert httpx.post(gateway.base_url + "/api/models/unload", timeout=10).status_code == 401
    with httpx.stream("GET", gateway.base_url + "/api/events", timeout=10) as events:
        assert events.status_code == 401
    # the admin token also works as x-api-key; open paths stay open
    api_key = {"x-api-key": ADMIN_HEADERS["authorization"].removeprefix("Bearer ")}
    assert httpx.get(gateway.base_url + "/api/system", headers=api_key).status_code == 200
    for path in ["/health", "/metrics", "/api/docs/openapi.json", "/api/auth/status", "/v1/models"]:
        assert httpx.get(gateway.base_url + path, timeout=10).status_code == 200, path


def test_openapi_documents_the_admin_api(gateway):
    schema = httpx.get(gateway.base_url + "/api/docs/openapi.json", timeout=10).json()
    for path in [
        "/api/models",
        "/api/models/{model_path}",
        "/api/requests",
        "/api/requests/histogram",
        "/api/requests/{request_id}",
        "/api/system",
        "/api/settings",
        "/api/maintenance/prune",
        "/api/config",
        "/api/config/validate",
        "/api/gpu",
        "/api/log-events",
        "/api/auth/login",
    ]:
        assert path in schema["paths"], path
    listed = schema["paths"]["/api/models"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listed["$ref"].endswith("ModelList")


# ----------------------------------------------------------------------------- models


def test_models_state_stats_history_config_and_actions(gateway):
    listed = admin(gateway, "GET", "/api/models").json()
    assert {m["id"]: m["state"] for m in listed["models"]} == {"org/m": "stopped", "other": "stopped"}

    loaded = admin(gateway, "POST", "/api/models/org/m/load")
    assert loaded.status_code == 200
    assert loaded.json() | {"seconds": 0} == {
        "model": "org/m",
        "action": "load",
        "state": "ready",
        "origin": "admin",
        "seconds": 0,
    }
    assert chat(gateway, "m-alias").status_code == 200
    assert chat(gateway, "org/m", x_fake={"status": 500}).status_code == 500
    wait_until(lambda: len(gateway.requests()) == 2, message="two logged requests")

    model = next(m for m in admin(gateway, "GET", "/api/models").json()["models"] if m["id"] == "org/m")
    assert model["state"] == "ready" and model["name"] == "The M model" and model["aliases"] == ["m-alias"]
    assert model["port"] == int(model["proxy"].rsplit(":", 1)[1]) and model["pid"] > 0
    assert model["uptime_seconds"] >= 0 and model["last_load_seconds"] > 0
    assert model["in_flight"] == 0 and model["queued"] == 0
    stats = model["stats"]
    assert stats["requests"] == 2 and stats["errors"] == 1
    assert stats["prompt_tokens"] > 0 and stats["completion_tokens"] > 0 and stats["ttft_ms"] is not None

    unloaded = admin(gateway, "POST", "/api/models/m-alias/unload")  # aliases resolve
    assert unloaded.json() == {"model": "org/m", "action": "unload", "state": "stopped"}

    def history() -> list[dict[str, Any]]:
        return admin(gateway, "GET", "/api/models/org/m").json()["history"]

    wait_until(
        lambda: [e["state"] for e in history()] == ["stopped", "stopping", "ready", "starting"],
        message="load and unload history",
    )
    events = {e["state"]: e for e in history()}
    assert events["ready"]["load_seconds"] > 0 and events["ready"]["previous"] == "starting"
    assert events["stopping"]["reason"] == "admin api" and events["stopped"]["reason"] == "admin api"
    detail = admin(gateway, "GET", "/api/models/org/m").json()
    assert detail["model"]["state"] == "stopped" and detail["model"]["stats"]["requests"] == 2

    snippet = admin(gateway, "GET", "/api/models/org/m/config").json()
    assert snippet["model"] == "org/m"
    parsed = yaml.safe_load(snippet["yaml"])
    assert parsed["org/m"]["name"] == "The M model" and "fake_openai.py" in parsed["org/m"]["cmd"]

    assert admin(gateway, "GET", "/api/models/nope").status_code == 404
    assert admin(gateway, "POST", "/api/models/nope/load").status_code == 404
    assert admin(gateway, "POST", "/api/models/org/m").status_code == 404  # no action named
    # llama-swap's unload endpoints keep working next to these
    assert admin(gateway, "POST", "/api/models/other/load").json()["state"] == "ready"
    assert admin(gateway, "POST", "/api/models/unload/other").json() == {"msg": "ok", "unloaded": "other"}
    assert admin(gateway, "GET", "/api/models/other").json()["model"]["state"] == "stopped"


# --------------------------------------------------------------------------- requests


def test_request_search_filters_and_cursor(gateway):
    assert chat(gateway, "org/m").status_code == 200
    assert chat(gateway, "org/m", stream=True).status_code == 200
    assert chat(gateway, "other").status_code == 200
    assert chat(gateway, "other", x_fake={"status": 500}).status_code == 500
    assert chat(gateway, "no-such-model").status_code == 404
    wait_until(lambda: len(gateway.requests()) == 5, message="five logged requests")

    def ids(**params: Any) -> list[int]:
        return [r["id"] for r in gateway.requests(**params)]

    every = ids()
    assert every == sorted(every, reverse=True)
    rows = {r["id"]: r for r in gateway.requests()}
    assert len(ids(model="org/m")) == 2 and len(ids(model="other")) == 2
    assert [rows[i]["status_code"] for i in ids(status="5xx")] == [500]
    assert [rows[i]["status_code"] for i in ids(status="404")] == [404]
    assert sorted(rows[i]["status_code"] for i in ids(status="error")) == [404, 500]
    assert [rows[i]["streamed"] for i in ids(streamed="true")] == [True]
    assert len(ids(streamed="false")) == 4
    assert [rows[i]["model"] for i in ids(q="SUCH-model")] == ["no-such-model"]  # text search ignores case
    assert len(ids(q="chat/completions")) == 5
    assert ids(q="%") == []  # LIKE wildcards are searched literally
    assert ids(key="some-key") == []
    assert ids(model="org/m", status="200", streamed="false") == [
        i for i in ids(model="org/m") if not rows[i]["streamed"]
    ]
    assert admin(gateway, "GET", "/api/requests", params={"status": "teapot"}).status_code == 400

    now = datetime.now(UTC)
    assert len(ids(since=(now - timedelta(minutes=5)).isoformat())) == 5
    assert ids(until=(now - timedelta(minutes=5)).isoformat()) == []

    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"before": cursor} if cursor else {})}
        page = admin(gateway, "GET", "/api/requests", params=params).json()
        pages.append([r["id"] for r in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 1] and [i for page in pages for i in page] == every


def test_request_histogram_buckets(gateway):
    now = datetime.now(UTC).replace(microsecond=0)
    since = now - timedelta(hours=3)
    insert_request(gateway, since + timedelta(minutes=10), prompt_tokens=3, completion_tokens=4, model="a")
    insert_request(gateway, since + timedelta(minutes=50), status_code=502, model="a", error="boom")
    insert_request(gateway, since + timedelta(hours=2, minutes=1), prompt_tokens=10, completion_tokens=20, model="b")
    insert_request(gateway, since - timedelta(minutes=1), model="a")  # before the range
    params = {"since": since.isoformat(), "until": now.isoformat(), "buckets": 3}
    histogram = admin(gateway, "GET", "/api/requests/histogram", params=params).json()
    assert histogram["bucket_seconds"] == 3600
    buckets = histogram["buckets"]
    assert [b["count"] for b in buckets] == [2, 0, 1]
    assert [b["errors"] for b in buckets] == [1, 0, 0]
    assert [(b["prompt_tokens"], b["completion_tokens"]) for b in buckets] == [(3, 4), (0, 0), (10, 20)]
    assert datetime.fromisoformat(buckets[1]["start"]) == since + timedelta(hours=1)
    filtered = admin(gateway, "GET", "/api/requests/histogram", params={**params, "model": "b"}).json()
    assert [b["count"] for b in filtered["buckets"]] == [0, 0, 1]
    assert (
        admin(gateway, "GET", "/api/requests/histogram", params={**params, "until": since.isoformat()}).status_code
        == 400
    )


def test_request_detail_decompresses_the_capture(gateway):
    capture = {
        "version": 1,
        "request": {
            "headers": [["authorization", "[redacted]"]],
            "body": {"content_type": "application/json", "size": 17, "truncated": False, "text": '{"model": "x"}'},
        },
        "response": {"headers": [], "body": None},
    }
    with_capture = insert_request(gateway, datetime.now(UTC), capture=compress(capture), model="x")
    without = insert_request(gateway, datetime.now(UTC), model="y")
    broken = insert_request(gateway, datetime.now(UTC), capture=b"not zlib", model="z")

    detail = admin(gateway, "GET", f"/api/requests/{with_capture}").json()
    assert detail["request"]["id"] == with_capture and detail["request"]["has_capture"] is True
    assert detail["capture"] == capture and detail["capture_error"] is None
    plain = admin(gateway, "GET", f"/api/requests/{without}").json()
    assert plain["capture"] is None and plain["request"]["has_capture"] is False
    damaged = admin(gateway, "GET", f"/api/requests/{broken}").json()
    assert damaged["capture"] is None and "not a compressed capture" in damaged["capture_error"]
    assert admin(gateway, "GET", "/api/requests/999999").status_code == 404
    listed = {r["id"]: r["has_capture"] for r in gateway.requests()}
    assert listed[with_capture] is True and listed[without] is False


# ------------------------------------------------------------------------------- etag


def test_json_gets_carry_an_etag_and_answer_304(gateway):
    first = admin(gateway, "GET", "/api/settings")
    etag = first.headers["etag"]
    assert etag.startswith('"') and first.headers["cache-control"] == "no-cache"
    again = httpx.get(gateway.base_url + "/api/settings", headers={**ADMIN_HEADERS, "if-none-match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    listed = httpx.get(gateway.base_url + "/api/settings", headers={**ADMIN_HEADERS, "if-none-match": f'"x", W/{etag}'})
    assert listed.status_code == 304
    assert admin(gateway, "PATCH", "/api/settings", json={"retention_days": 12}).status_code == 200
    changed = httpx.get(gateway.base_url + "/api/settings", headers={**ADMIN_HEADERS, "if-none-match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag and changed.json()["retention_days"] == 12
    # the raw YAML of the config is tagged as well; 401s are not
    config = admin(gateway, "GET", "/api/config")
    assert config.headers["etag"] and config.headers["content-type"].startswith("application/yaml")
    assert "etag" not in httpx.get(gateway.base_url + "/api/settings").headers


# ------------------------------------------------------------------------------ events


def test_sse_client_gets_request_completed_within_a_second(gateway):
    assert admin(gateway, "POST", "/api/models/other/load").status_code == 200
    reader = SseReader(gateway.base_url + "/api/events?heartbeat=0.5")
    try:
        wait_until(lambda: reader.first("models") is not None, message="initial snapshot")
        assert chat(gateway, "other").status_code == 200
        answered = time.monotonic()
        wait_until(
            lambda: reader.first("request.completed", model="other") is not None, timeout=5, message="request.completed"
        )
        at, data = reader.first("request.completed", model="other")  # type: ignore[misc]
        assert at - answered < 1.0
        assert data["status"] == 200 and data["prompt_tokens"] > 0
        wait_until(lambda: reader.first("heartbeat") is not None, timeout=5, message="heartbeat")
        # heartbeats carry the in-flight requests per model
        slow = threading.Thread(target=chat, args=(gateway, "other"), kwargs={"x_fake": {"delay": 0.5}})
        slow.start()
        try:
            wait_until(
                lambda: reader.first("heartbeat", in_flight=1, models={"other": 1}) is not None,
                timeout=5,
                message="a heartbeat with the slow request in flight",
            )
        finally:
            slow.join()
    finally:
        reader.close()


def test_log_events_stream_model_server_lines(gateway):
    reader = SseReader(gateway.base_url + "/api/log-events")
    try:
        wait_until(lambda: reader.first("sources") is not None, message="sources")
        assert set(reader.first("sources")[1]["sources"]) == {"proxy", "org/m", "other"}  # type: ignore[index]
        assert admin(gateway, "POST", "/api/models/other/load").status_code == 200
        wait_until(
            lambda: any(
                n == "log" and d["source"] == "other" and "starting other" in d["text"] for _, n, d in reader.events
            ),
            message="model log line",
        )
        line = next(d for _, n, d in reader.events if n == "log" and d["source"] == "other")
        assert isinstance(line["at"], float)
    finally:
        reader.close()
    only_proxy = SseReader(gateway.base_url + "/api/log-events?source=proxy&history=true")
    try:
        wait_until(lambda: any(n == "log" for _, n, _ in only_proxy.events), message="history")
        assert {d["source"] for _, n, d in only_proxy.events if n == "log"} == {"proxy"}
    finally:
        only_proxy.close()
    assert admin(gateway, "GET", "/api/log-events", params={"source": "nope"}).status_code == 404


# ------------------------------------------------------------------------------ system


def test_system_reports_health_upstreams_versions_and_database(gateway_factory):
    dead_peer = f"http://127.0.0.1:{free_port()}"
    gateway = gateway_factory(MODELS + f"peers:\n  gone:\n    proxy: {dead_peer}\n    models: [remote]\n")
    assert admin(gateway, "POST", "/api/models/other/load").status_code == 200
    assert chat(gateway, "other").status_code == 200
    wait_until(lambda: len(gateway.requests()) == 1, message="a logged request")
    system = admin(gateway, "GET", "/api/system").json()
    assert system["status"] == "degraded"  # the peer is unreachable
    upstreams = {u["name"]: u for u in system["upstreams"]}
    assert upstreams["other"]["kind"] == "model" and upstreams["other"]["reachable"] is True
    assert upstreams["other"]["status_code"] == 200 and upstreams["other"]["latency_ms"] >= 0
    assert upstreams["gone"]["kind"] == "peer" and upstreams["gone"]["reachable"] is False
    assert upstreams["gone"]["error"] and "org/m" not in upstreams  # not running: not probed
    assert system["versions"]["switchyard"] and system["versions"]["litestar"] and system["versions"]["granian"]
    assert system["versions"]["python"].count(".") == 2
    assert system["database"]["dialect"] == "sqlite" and system["database"]["size_bytes"] > 0
    assert system["request_log"] == {"queue_depth": 0, "written": 1, "dropped": 0, "failed": 0}
    assert system["model_events"]["written"] >= 2  # starting, ready
    assert system["models_configured"] == 2 and system["models_running"] == 1
    assert 0 <= system["uptime_seconds"] < 600


def test_gpu_endpoint_answers_without_gpus(gateway):
    gpu = admin(gateway, "GET", "/api/gpu").json()
    assert gpu == {"gpus": [], "sampled_at": None, "readers": []}  # this machine has no GPU


# ---------------------------------------------------------------- settings, maintenance


def test_settings_are_validated_and_persist(gateway):
    settings = admin(gateway, "GET", "/api/settings").json()
    assert settings["retention_days"] == 30 and settings["protect_metrics"] is False
    patched = admin(
        gateway,
        "PATCH",
        "/api/settings",
        json={"retention_days": 7, "capture_max_bytes": 4096, "attribution": {"client": "x-client"}},
    )
    assert patched.status_code == 200
    assert patched.json() == {
        **settings,
        "retention_days": 7,
        "capture_max_bytes": 4096,
        "attribution": {"client": "x-client"},
    }
    assert admin(gateway, "PATCH", "/api/settings", json={"retention_days": -1}).status_code == 400
    assert admin(gateway, "PATCH", "/api/settings", json={"retention_days": "soon"}).status_code == 400
    assert admin(gateway, "GET", "/api/settings").json()["retention_days"] == 7
    gateway.stop()
    gateway.start()
    assert admin(gateway, "GET", "/api/settings").json()["capture_max_bytes"] == 4096


def test_prune_deletes_rows_older_than_the_retention_and_compact_vacuums(gateway):
    old = datetime.now(UTC) - timedelta(days=40)
    for index in range(2):
        insert_request(gateway, old, model=f"old{index}")
    fresh = insert_request(gateway, datetime.now(UTC) - timedelta(days=1), model="fresh")
    with database(gateway) as db:
        db.execute("INSERT INTO model_events (at, model, state) VALUES (?, 'x', 'ready')", [sql_time(old)])
    assert admin(gateway, "PATCH", "/api/settings", json={"retention_days": 30}).status_code == 200

    report = admin(gateway, "POST", "/api/maintenance/prune").json()
    assert report["request_logs"] == 2 and report["model_events"] == 1
    assert datetime.fromisoformat(report["cutoff"]) < datetime.now(UTC) - timedelta(days=29)
    assert [r["id"] for r in gateway.requests()] == [fresh]
    assert admin(gateway, "POST", "/api/maintenance/prune").json()["request_logs"] == 0

    everything = admin(gateway, "POST", "/api/maintenance/prune", json={"older_than_days": 0}).json()
    assert everything["request_logs"] == 1 and gateway.requests() == []

    compacted = admin(gateway, "POST", "/api/maintenance/compact")
    assert compacted.status_code == 200
    result = compacted.json()
    assert result["dialect"] == "sqlite" and result["size_after"] > 0 and result["seconds"] >= 0


# ------------------------------------------------------------------------------ config


def test_config_validate_reports_every_problem_with_line_and_column(gateway):
    broken = "models:\n  a:\n    cmd: run a --port ${PORT}\n    ttl: soon\n  b:\n    proxy: 17\n"
    result = admin(gateway, "POST", "/api/config/validate", content=broken, headers={"content-type": "text/yaml"})
    assert result.status_code == 200
    body = result.json()
    assert body["valid"] is False and body["models"] is None
    errors = {(p["path"], p["line"], p["column"]) for p in body["problems"] if p["severity"] == "error"}
    assert ("models.a.ttl", 4, 5) in errors
    assert any(path.startswith("models.b") for path, _, _ in errors)
    good = admin(gateway, "POST", "/api/config/validate", content=f"models:\n  z:\n    cmd: {fake_cmd()}\n")
    assert good.json() == {"valid": True, "problems": [], "models": 1}
    syntax = admin(gateway, "POST", "/api/config/validate", content="models: [unclosed").json()
    assert syntax["valid"] is False and syntax["problems"][0]["line"] is not None


def test_config_save_is_validated_backed_up_atomic_and_hot_reloaded(gateway):
    path = Path(gateway.config_path)
    original = path.read_bytes()
    served = admin(gateway, "GET", "/api/config")
    assert served.content == original
    etag = served.headers["etag"]

    def listed() -> list[str]:
        return [m["id"] for m in httpx.get(gateway.base_url + "/v1/models", timeout=10).json()["data"]]

    before = listed()
    invalid = original.decode().replace("models:\n", "models:\n  broken:\n    cmd: x\n    ttl: soon\n", 1)
    refused = admin(gateway, "PUT", "/api/config", content=invalid)
    assert refused.status_code == 422
    assert refused.json()["saved"] is False and refused.json()["problems"][0]["path"] == "models.broken.ttl"
    assert path.read_bytes() == original  # the file is untouched
    assert not list(path.parent.glob("config.yaml.*.bak"))  # nothing backed up, nothing written
    assert listed() == before  # the running config is untouched
    assert admin(gateway, "GET", "/api/config").content == original

    extended = original.decode().replace("models:\n", f"models:\n  added:\n    cmd: {fake_cmd()}\n", 1)
    reader = SseReader(gateway.base_url + "/api/events")
    saved = admin(gateway, "PUT", "/api/config", content=extended, headers={"if-match": etag})
    assert saved.status_code == 200, saved.text
    assert saved.json()["saved"] is True and saved.json()["models"] == 3
    backup = Path(saved.json()["backup"])
    assert backup.parent == path.parent and backup.name.startswith("config.yaml.") and backup.suffix == ".bak"
    assert backup.read_bytes() == original
    assert path.read_text() == extended
    assert not list(path.parent.glob(".config.yaml.*"))  # no temporary file left behind
    assert "added" in listed()  # hot-reloaded
    assert chat(gateway, "added").status_code == 200
    # dashboards hear of it once: the file watcher (1 s) does not reload the file the save just wrote
    time.sleep(2.5)
    reader.close()
    assert [d["models"] for _, name, d in reader.events if name == "config.reloaded"] == [3]

    stale = admin(gateway, "PUT", "/api/config", content=original.decode(), headers={"if-match": etag})
    assert stale.status_code == 412 and path.read_text() == extended
