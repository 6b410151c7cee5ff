"""The model library with real llama-server processes: scan, on-demand serving, presets, export/restore,
serving controls (queue 429, max-loaded LRU eviction by origin, idle sleep and wake) and hub downloads.

Library model ids are file names, so every test names its files with a unique tag; the generated command
passes the id as `--alias`, which is how the tests find a model's process.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import FAKE_UPSTREAM
from tests.integration.test_downloads import HubHandler, HubState
from tests.servers import ADMIN_HEADERS, pids_with, wait_until


@pytest.fixture
def tag(request) -> str:
    return f"lib{abs(hash(request.node.name)) % 10**7}"


def alive(model_id: str) -> bool:
    return bool(pids_with(f"--alias {model_id}"))


def pid_of(model_id: str) -> int:
    [pid] = pids_with(f"--alias {model_id}")
    return pid


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def library_dir(tmp_path: Path, tiny_gguf: Path, names: list[str]) -> Path:
    folder = tmp_path / "library"
    folder.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(tiny_gguf, folder / f"{name}.gguf")
    return folder


def library_config(folder: Path, llama_bin: str, **settings) -> str:
    lines = [f"library:\n  paths: [{folder}]\n  llamaServer: {llama_bin}"]
    lines += [f"  {key}: {value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def chat(gateway, model: str, max_tokens: int = 2, path: str = "/v1/chat/completions") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}
    return httpx.post(gateway.base_url + path, json=body, timeout=120)


def ollama_generate(gateway, model: str) -> httpx.Response:
    body = {"model": model, "prompt": "hi", "stream": False, "options": {"num_predict": 1}}
    return httpx.post(gateway.base_url + "/ollama/api/generate", json=body, timeout=120)


def admin(method: str, gateway, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, gateway.base_url + path, headers=ADMIN_HEADERS, timeout=120, **kwargs)


def test_scanned_files_are_listed_and_served_on_demand(gateway_factory, llama_bin, tiny_gguf, tmp_path, tag):
    folder = library_dir(tmp_path, tiny_gguf, [f"{tag}-chat-Q8_0", f"{tag}-hand"])
    (folder / "notes.txt").write_text("not a model")
    gateway = gateway_factory(
        library_config(folder, llama_bin)
        + f"models:\n  handwritten:\n    cmd: {llama_bin} -m {folder}/{tag}-hand.gguf --port ${{PORT}} -c 512\n"
    )
    index = admin("GET", gateway, "/api/library").json()
    assert index["configured"] and index["paths"] == [str(folder)]
    models = {m["id"]: m for m in index["models"]}
    assert sorted(models) == [f"{tag}-chat-Q8_0", f"{tag}-hand"]
    chat_model = models[f"{tag}-chat-Q8_0"]
    assert (chat_model["architecture"], chat_model["block_count"], chat_model["context_length"]) == ("llama", 2, 2048)
    assert chat_model["served_as"] == f"{tag}-chat-Q8_0" and chat_model["state"] == "stopped"
    assert models[f"{tag}-hand"]["served_by"] == "handwritten"  # config entries win
    listed = [m["id"] for m in httpx.get(gateway.base_url + "/v1/models").json()["data"]]
    assert listed == ["handwritten", f"{tag}-chat-Q8_0"]

    assert not alive(f"{tag}-chat-Q8_0")
    response = chat(gateway, f"{tag}-chat-Q8_0")
    assert response.status_code == 200, response.text
    assert alive(f"{tag}-chat-Q8_0")
    assert response.json()["usage"]["completion_tokens"] == 2

    # a new file appears after a rescan, a removed one disappears
    shutil.copy(tiny_gguf, folder / f"{tag}-new.gguf")
    (folder / f"{tag}-chat-Q8_0.gguf").unlink()
    rescan = admin("POST", gateway, "/api/library/rescan").json()
    assert rescan["added"] == [f"{tag}-new"] and rescan["removed"] == [f"{tag}-chat-Q8_0"]
    wait_until(lambda: not alive(f"{tag}-chat-Q8_0"), message="the removed model's server to stop")
    assert chat(gateway, f"{tag}-new").status_code == 200


def test_a_preset_becomes_the_command_and_launch_changes_wait_for_a_restart(
    gateway_factory, llama_bin, tiny_gguf, tmp_path, tag
):
    model = f"{tag}-m"
    gateway = gateway_factory(library_config(library_dir(tmp_path, tiny_gguf, [model]), llama_bin))
    put = admin("PUT", gateway, f"/api/library/{model}/preset", json={"ctx_size": 512, "parallel": 1})
    assert put.status_code == 200 and put.json()["applied"] and not put.json()["restart_needed"]
    assert chat(gateway, model).status_code == 200
    args = cmdline(pid_of(model))
    assert args[args.index("-c") + 1] == "512" and args[args.index("-np") + 1] == "1"
    show = httpx.post(gateway.base_url + "/ollama/api/show", json={"model": model}).json()
    assert show["model_info"]["llama.context_length"] == 512

    # a live setting applies at once; a launch setting of a running model waits for its restart
    pid = pid_of(model)
    live = admin("PUT", gateway, f"/api/library/{model}/preset", json={"ctx_size": 512, "parallel": 1,
                                                                         "max_concurrent": 2})  # fmt: skip
    assert live.json()["restart_needed"] is False and pid_of(model) == pid
    later = admin("PUT", gateway, f"/api/library/{model}/preset", json={"ctx_size": 768, "parallel": 1})
    assert later.json()["restart_needed"] is True and "need a restart" in later.json()["message"]
    assert pid_of(model) == pid and admin("GET", gateway, f"/api/library/{model}/preset").json()["restart_pending"]
    assert chat(gateway, model).status_code == 200 and pid_of(model) == pid
    admin("POST", gateway, f"/api/models/unload/{model}")
    wait_until(lambda: not admin("GET", gateway, f"/api/library/{model}").json()["restart_pending"],
               message="the held-back launch settings to apply once the model stopped")  # fmt: skip
    assert chat(gateway, model).status_code == 200
    args = cmdline(pid_of(model))
    assert args[args.index("-c") + 1] == "768"
    # ?restart=true restarts a running model at once
    now = admin("PUT", gateway, f"/api/library/{model}/preset?restart=true", json={"ctx_size": 640})
    assert now.json()["applied"] and not alive(model)
    assert chat(gateway, model).status_code == 200
    args = cmdline(pid_of(model))
    assert args[args.index("-c") + 1] == "640" and "-np" not in args

    bad = admin("PUT", gateway, f"/api/library/{model}/preset", json={"ctx_size": "big", "extra_args": "--port 1"})
    assert bad.status_code == 400
    assert admin("PUT", gateway, "/api/library/nope/preset", json={}).status_code == 404


def test_export_and_restore_round_trip(gateway_factory, llama_bin, tiny_gguf, tmp_path, tag):
    folder = library_dir(tmp_path, tiny_gguf, [f"{tag}-a", f"{tag}-b"])
    config = library_config(folder, llama_bin)
    first = gateway_factory(config)
    admin("PUT", first, f"/api/library/{tag}-a/preset", json={"ctx_size": 1024, "sampling": {"temperature": 0.2}})
    admin("PUT", first, f"/api/library/{tag}-b/preset", json={"idle_timeout": 300})
    exported = admin("GET", first, "/api/library/export").json()
    assert exported["format"] == "switchyard.library/1"
    by_id = {m["id"]: m for m in exported["models"]}
    assert by_id[f"{tag}-a"]["preset"] == {"ctx_size": 1024, "sampling": {"temperature": 0.2}}
    assert by_id[f"{tag}-a"]["file"] == f"{tag}-a.gguf" and "path" not in by_id[f"{tag}-a"]

    second = gateway_factory(config)  # its own, empty database
    admin("PUT", second, f"/api/library/{tag}-b/preset", json={"idle_timeout": 60, "max_concurrent": 3})
    exported["models"].append({"id": "elsewhere", "preset": {"ctx_size": 1}})
    report = admin("POST", second, "/api/library/restore", json=exported).json()
    assert report["added"] == [f"{tag}-a"] and report["merged"] == [] and report["unchanged"] == [f"{tag}-b"]
    assert report["unknown"] == ["elsewhere"]
    preset = lambda m: admin("GET", second, f"/api/library/{m}/preset").json()["preset"]
    assert preset(f"{tag}-a") == {"ctx_size": 1024, "sampling": {"temperature": 0.2}}
    assert preset(f"{tag}-b") == {"idle_timeout": 60, "max_concurrent": 3}  # set values are never overwritten
    again = admin("GET", second, "/api/library/export").json()
    assert {m["id"]: m.get("preset") for m in again["models"]} == {
        f"{tag}-a": {"ctx_size": 1024, "sampling": {"temperature": 0.2}},
        f"{tag}-b": {"idle_timeout": 60, "max_concurrent": 3},
    }
    assert admin("POST", second, "/api/library/restore", json={"models": "no"}).status_code == 400


def fake_llama_server(tmp_path: Path) -> str:
    """A stand-in for llama-server that takes its command line and serves tests/upstreams/fake_openai.py,
    whose answers can be made exactly as slow as a test needs (`x_fake.delay`)."""
    script = tmp_path / "fake-llama-server"
    script.write_text(
        "#!/bin/sh\n"
        'while [ $# -gt 0 ]; do [ "$1" = --port ] && port=$2; shift; done\n'
        f'exec {sys.executable} {FAKE_UPSTREAM} --port "$port"\n'
    )
    script.chmod(0o755)
    return str(script)


def test_max_concurrent_queues_and_answers_429_beyond_the_queue(gateway_factory, tiny_gguf, tmp_path, tag):
    model = f"{tag}-q"
    gateway = gateway_factory(library_config(library_dir(tmp_path, tiny_gguf, [model]), fake_llama_server(tmp_path)))
    admin("PUT", gateway, f"/api/library/{model}/preset", json={"max_concurrent": 1, "queue_depth": 1})
    results: dict[str, httpx.Response] = {}

    def send(name: str, seconds: float) -> None:
        body = {"model": model, "messages": [{"role": "user", "content": "x"}],
                "x_fake": {"chunks": 10, "delay": seconds / 10}}  # fmt: skip
        results[name] = httpx.post(gateway.base_url + "/v1/chat/completions", json=body, timeout=60)

    def running() -> dict:
        return next(
            r
            for r in httpx.get(gateway.base_url + "/running", headers=ADMIN_HEADERS).json()["running"]
            if r["model"] == model
        )

    slow = threading.Thread(target=send, args=("slow", 3.0))
    slow.start()
    wait_until(lambda: any(r["model"] == model for r in httpx.get(gateway.base_url + "/running", headers=ADMIN_HEADERS).json()["running"])
               and running()["in_flight"] == 1, message="the slow request to hold the only slot")  # fmt: skip
    waiting = threading.Thread(target=send, args=("waiting", 0.0))
    waiting.start()
    wait_until(lambda: running()["queued"] == 1, message="the second request to wait for the slot")
    refused = chat(gateway, model)
    assert refused.status_code == 429, refused.text
    assert "serves at most 1 request(s) at once and 1 more may wait" in refused.json()["error"]["message"]
    assert refused.headers.get("retry-after")
    assert running()["in_flight"] == 1 and running()["queued"] == 1
    slow.join(60)
    waiting.join(60)
    assert results["slow"].status_code == 200 and results["waiting"].status_code == 200
    assert results["waiting"].elapsed.total_seconds() > 1.0  # it waited for the slot, then was served

    # on the Ollama API the refusal is in Ollama's shape
    admin("PUT", gateway, f"/api/library/{model}/preset", json={"max_concurrent": 1, "queue_depth": 0})
    slow = threading.Thread(target=send, args=("slow", 2.0))
    slow.start()
    wait_until(lambda: running()["in_flight"] == 1, message="the slot to be taken")
    refused = ollama_generate(gateway, model)
    assert refused.status_code == 429 and set(refused.json()) == {"error"}
    slow.join(60)


def test_max_loaded_evicts_the_least_recently_used_by_origin(gateway_factory, llama_bin, tiny_gguf, tmp_path, tag):
    a, b, c, emb = (f"{tag}-{x}" for x in ("a", "b", "c", "emb"))
    gateway = gateway_factory(library_config(library_dir(tmp_path, tiny_gguf, [a, b, c, emb]), llama_bin, maxLoaded=2))
    admin("PUT", gateway, f"/api/library/{emb}/preset", json={"embedding": True})
    loaded = lambda: {m for m in (a, b, c, emb) if alive(m)}

    assert ollama_generate(gateway, a).status_code == 200
    assert ollama_generate(gateway, b).status_code == 200
    assert ollama_generate(gateway, a).status_code == 200  # a is now more recent than b
    assert ollama_generate(gateway, c).status_code == 200  # full: the least recently used (b) goes
    wait_until(lambda: loaded() == {a, c}, message="b evicted")

    refused = chat(gateway, b)  # the OpenAI API never evicts under the cap
    assert refused.status_code == 503, refused.text
    assert "2 of at most 2 models are loaded" in refused.json()["error"]["message"]
    assert loaded() == {a, c}

    loaded_by_admin = admin("POST", gateway, f"/api/models/{b}/load")
    assert loaded_by_admin.status_code == 200 and loaded_by_admin.json()["origin"] == "admin"
    wait_until(lambda: loaded() == {b, c}, message="an admin load evicts the LRU API-loaded model (a)")

    assert ollama_generate(gateway, a).status_code == 200  # may only evict API-loaded c, never admin-loaded b
    wait_until(lambda: loaded() == {a, b}, message="c evicted, b kept")
    assert chat(gateway, b).status_code == 200  # loaded models serve every API

    # embedding models neither count nor get evicted
    embedded = httpx.post(gateway.base_url + "/v1/embeddings", json={"model": emb, "input": "x"}, timeout=60)
    assert embedded.status_code == 200, embedded.text
    assert loaded() == {a, b, emb}
    assert ollama_generate(gateway, c).status_code == 200
    wait_until(lambda: loaded() == {b, c, emb}, message="a (API-loaded) evicted for c; emb untouched")
    library = {m["id"]: m for m in admin("GET", gateway, "/api/library").json()["models"]}
    assert library[b]["origin"] == "admin" and library[c]["origin"] == "ollama"


def test_idle_sleep_and_wake(gateway_factory, llama_bin, tiny_gguf, tmp_path, tag):
    sleepy, preset_sleepy, other = f"{tag}-sleepy", f"{tag}-psleepy", f"{tag}-other"
    folder = library_dir(tmp_path, tiny_gguf, [sleepy, preset_sleepy, other])
    gateway = gateway_factory(library_config(folder, llama_bin, maxLoaded=0, idleMinutes=0.02))
    admin("PUT", gateway, f"/api/library/{preset_sleepy}/preset", json={"idle_timeout": 2})
    admin("PUT", gateway, f"/api/library/{other}/preset", json={"idle_timeout": 0})  # never sleeps
    for model in (sleepy, preset_sleepy, other):
        assert chat(gateway, model).status_code == 200
    first = pid_of(sleepy)
    wait_until(lambda: not alive(sleepy), timeout=10, message="idleMinutes (1.2 s) to put the model to sleep")
    assert alive(preset_sleepy)
    wait_until(lambda: not alive(preset_sleepy), timeout=10, message="the preset's idle timeout (2 s)")
    assert alive(other)
    woken = chat(gateway, sleepy)  # transparent apart from the cold start
    assert woken.status_code == 200 and pid_of(sleepy) != first

    # a request naming another model than the one a path serves is refused without waking anything
    wait_until(lambda: not alive(sleepy), timeout=10, message="sleep again")
    body = {"model": other, "messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
    wrong = httpx.post(f"{gateway.base_url}/upstream/{sleepy}/v1/chat/completions", json=body, timeout=30)
    assert wrong.status_code == 400 and "serves model" in wrong.json()["error"]["message"]
    assert not alive(sleepy)
    body["model"] = sleepy
    right = httpx.post(f"{gateway.base_url}/upstream/{sleepy}/v1/chat/completions", json=body, timeout=60)
    assert right.status_code == 200 and alive(sleepy)


# ------------------------------------------------------------------ downloads


@pytest.fixture
def hub():
    state = HubState()

    class Handler(HubHandler):
        pass

    Handler.state = state  # type: ignore[assignment]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield state
    server.shutdown()
    server.server_close()


def test_download_through_the_api_resumes_a_cut_connection(gateway_factory, llama_bin, tiny_gguf, tmp_path, hub, tag):
    repo, name = "acme/tiny-GGUF", f"{tag}-dl-Q8_0.gguf"
    data = tiny_gguf.read_bytes()
    hub.files[(repo, name)] = data
    hub.files[(repo, f"{tag}-dl-Q4_K_M.gguf")] = b"other quantization"
    hub.drop_once.add((repo, name))
    folder = tmp_path / "library"
    folder.mkdir()
    gateway = gateway_factory(library_config(folder, llama_bin), env={"SWITCHYARD_HF_BASE_URL": hub.url})
    events: list[tuple[str, dict]] = []

    def listen() -> None:
        with httpx.stream("GET", gateway.base_url + "/api/events", headers=ADMIN_HEADERS, timeout=60) as stream:
            kind = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "download.progress":
                    events.append((kind, json.loads(line[6:])))
                    if events[-1][1]["state"] in ("done", "failed"):
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(0.3)
    started = admin("POST", gateway, "/api/downloads", json={"repo": repo, "quantization": "q8_0"})
    assert started.status_code == 202, started.text
    [job] = started.json()["downloads"]
    assert job["filename"] == name

    def finished() -> dict | None:
        jobs = {j["id"]: j for j in admin("GET", gateway, "/api/downloads").json()["downloads"]}
        return jobs[job["id"]] if jobs[job["id"]]["state"] in ("done", "failed") else None

    wait_until(lambda: finished() is not None, timeout=30, message="the download to finish")
    final = finished()
    assert final["state"] == "done", final
    assert (final["attempts"], final["resumed_from"], final["verified"]) == (2, len(data) // 2, True)
    assert [t["range"] for t in hub.downloads_of(name)] == [None, f"bytes={len(data) // 2}-"]
    assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    listener.join(10)
    states = [data["state"] for _, data in events]
    assert "downloading" in states and states[-1] == "done"

    # the finished file is scanned and served
    model = name.removesuffix(".gguf")
    wait_until(lambda: any(m["id"] == model for m in admin("GET", gateway, "/api/library").json()["models"]),
               message="the rescan after the download")  # fmt: skip
    assert chat(gateway, model).status_code == 200

    missing = admin("POST", gateway, "/api/downloads", json={"repo": repo, "quantization": "Q2_K"})
    assert missing.status_code == 404 and "Q4_K_M, Q8_0" in missing.json()["detail"]
    assert admin("POST", gateway, "/api/downloads", json={"repo": "nope"}).status_code == 400
    assert admin("DELETE", gateway, "/api/downloads/unknown").status_code == 404


def test_a_download_can_be_cancelled(gateway_factory, llama_bin, tmp_path, hub):
    hub.files[("acme/big", "big-Q4_0.gguf")] = hashlib.shake_256(b"big").digest(3_000_000)
    folder = tmp_path / "library"
    folder.mkdir()
    gateway = gateway_factory(
        library_config(folder, llama_bin),
        env={"SWITCHYARD_HF_BASE_URL": hub.url, "SWITCHYARD_DOWNLOAD_SPEED_LIMIT": "500000"},
    )
    [job] = admin("POST", gateway, "/api/downloads", json={"repo": "acme/big", "file": "big-Q4_0.gguf"}).json()[
        "downloads"
    ]
    wait_until(lambda: admin("GET", gateway, "/api/downloads").json()["downloads"][0]["bytes_done"] > 100_000,
               message="some progress")  # fmt: skip
    assert admin("DELETE", gateway, f"/api/downloads/{job['id']}").json()["cancelled"] is True
    wait_until(lambda: admin("GET", gateway, "/api/downloads").json()["downloads"][0]["state"] == "cancelled",
               message="the cancel")  # fmt: skip
    assert (folder / "big-Q4_0.gguf.part").exists() and not (folder / "big-Q4_0.gguf").exists()


def test_without_library_paths_downloads_say_what_to_configure(gateway_factory, hub):
    gateway = gateway_factory("models: {}\n", env={"SWITCHYARD_HF_BASE_URL": hub.url})
    assert admin("GET", gateway, "/api/library").json() == {
        "configured": False, "paths": [], "llama_server": None, "max_loaded": None, "idle_minutes": None, "models": [],
    }  # fmt: skip
    refused = admin("POST", gateway, "/api/downloads", json={"repo": "acme/x", "file": "x.gguf"})
    assert refused.status_code == 409 and "library.paths" in refused.json()["detail"]
    assert hub.requests == []  # refused before asking the hub anything
