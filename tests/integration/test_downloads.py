"""The hub downloader against a small Hugging Face-compatible server on loopback.

The server implements the endpoints the downloader uses (tree listing, model info with ``siblings``,
``resolve`` with a redirect to a "CDN" path, byte ranges) and can misbehave on purpose: drop a connection
halfway, lie about a checksum, ignore ``Range``, fail with 500, demand a token.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.downloads import (
    ChecksumMismatchError,
    DownloadProgress,
    HubAuthError,
    HubDownloader,
    HubError,
    HubNotFoundError,
    HubServerError,
    HubSettings,
    RepoFile,
    TokenBucket,
    gguf_parts,
)

TOKEN = "hf_test_token"


@dataclass
class HubState:
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    private: set[str] = field(default_factory=set)
    drop_once: set[tuple[str, str]] = field(default_factory=set)  # cut the first transfer halfway
    wrong_sha: set[tuple[str, str]] = field(default_factory=set)
    fail_with_500: set[tuple[str, str]] = field(default_factory=set)
    ignore_range: bool = False
    tree_api: bool = True
    redirect: bool = True
    requests: list[dict] = field(default_factory=list)

    def sha(self, repo: str, path: str) -> str:
        if (repo, path) in self.wrong_sha:
            return "0" * 64
        return hashlib.sha256(self.files[(repo, path)]).hexdigest()

    def downloads_of(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"].startswith("/cdn/") and r["path"].endswith(path)] or [
            r for r in self.requests if "/resolve/" in r["path"] and r["path"].endswith(path)
        ]


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HubState

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        state = self.state
        state.requests.append(
            {"path": self.path, "range": self.headers.get("Range"), "auth": self.headers.get("Authorization")}
        )
        route = self.path.split("?", 1)[0]
        if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)", route):
            if not state.tree_api:
                return self.reply(404, b"Not Found")
            return self.listing(match.group(1), tree=True)
        if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)", route):
            return self.listing(match.group(1), tree=False)
        if match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", route):
            return self.resolve(match.group(1), match.group(3))
        if match := re.fullmatch(r"/cdn/([^/]+/[^/]+)/(.+)", route):
            return self.serve(match.group(1), match.group(2), {"ETag": '"0123456789abcdef0123456789abcdef"'})
        return self.reply(404, b"no route")

    def authorised(self, repo: str) -> bool:
        if repo in self.state.private and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.reply(401, b'{"error":"Invalid credentials in Authorization header"}')
            return False
        return True

    def listing(self, repo: str, tree: bool):
        if not self.authorised(repo):
            return None
        paths = sorted(p for (r, p) in self.state.files if r == repo)
        if not paths:
            return self.reply(404, b'{"error":"Repository not found"}', {"X-Error-Code": "RepoNotFound"})
        if tree:
            items = [
                {"type": "file", "path": p, "size": len(self.state.files[(repo, p)]), "oid": "1" * 40,
                 "lfs": {"oid": self.state.sha(repo, p), "size": len(self.state.files[(repo, p)]), "pointerSize": 130}}
                for p in paths
            ]  # fmt: skip
            body = json.dumps([{"type": "directory", "path": "sub", "oid": "2" * 40, "size": 0}, *items])
        else:
            siblings = [
                {"rfilename": p, "size": len(self.state.files[(repo, p)]),
                 "lfs": {"sha256": self.state.sha(repo, p), "size": len(self.state.files[(repo, p)])}}
                for p in paths
            ]  # fmt: skip
            body = json.dumps({"id": repo, "siblings": siblings})
        return self.reply(200, body.encode(), {"Content-Type": "application/json"})

    def resolve(self, repo: str, path: str):
        if not self.authorised(repo):
            return None
        if (repo, path) not in self.state.files:
            return self.reply(404, b"Entry not found", {"X-Error-Code": "EntryNotFound"})
        if (repo, path) in self.state.fail_with_500:
            return self.reply(500, b"internal error")
        linked = {
            "X-Linked-Etag": f'"{self.state.sha(repo, path)}"',
            "X-Linked-Size": str(len(self.state.files[(repo, path)])),
        }
        if self.state.redirect:
            return self.reply(302, b"", {"Location": f"/cdn/{repo}/{path}", **linked})
        return self.serve(repo, path, {"ETag": linked["X-Linked-Etag"]})

    def serve(self, repo: str, path: str, headers: dict[str, str]):
        data = self.state.files[(repo, path)]
        start = 0
        requested = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if requested and not self.state.ignore_range:
            start = int(requested.group(1))
            if start >= len(data):
                return self.reply(416, b"", {"Content-Range": f"bytes */{len(data)}"})
        body = data[start:]
        status = 206 if start else 200
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if (repo, path) in self.state.drop_once:
            self.state.drop_once.discard((repo, path))
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return None
        for offset in range(0, len(body), 64 * 1024):
            self.wfile.write(body[offset : offset + 64 * 1024])
        return None

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None):
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def hub_server():
    state_holder: dict[str, HubState] = {"state": HubState()}

    class Handler(HubHandler):
        @property
        def state(self):  # type: ignore[override]
            return state_holder["state"]

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, state_holder
    server.shutdown()
    server.server_close()


@pytest.fixture
def hub(hub_server) -> HubState:
    _, holder = hub_server
    holder["state"] = HubState()
    return holder["state"]


@pytest.fixture
def base_url(hub_server) -> str:
    server, _ = hub_server
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
async def downloader_factory(base_url):
    made: list[HubDownloader] = []

    def make(**settings) -> tuple[HubDownloader, list[DownloadProgress]]:
        events: list[DownloadProgress] = []
        values = {"base_url": base_url, "backoff_initial": 0.01, "backoff_max": 0.05, "timeout": 5.0, **settings}
        downloader = HubDownloader(HubSettings(**values), on_progress=events.append)
        made.append(downloader)
        return downloader, events

    yield make
    for downloader in made:
        await downloader.aclose()


def payload(size: int, seed: int = 1) -> bytes:
    return hashlib.shake_256(f"model-{seed}".encode()).digest(size)


REPO = "acme/tiny-GGUF"


# ================================================================ listing


async def test_tree_listing_gives_sizes_and_lfs_sha256(hub, downloader_factory):
    hub.files[(REPO, "tiny-Q4_K_M.gguf")] = payload(1000)
    hub.files[(REPO, "README.md")] = b"# tiny"
    downloader, _ = downloader_factory()
    files = await downloader.list_files(REPO)
    assert files == [
        RepoFile("README.md", 6, hashlib.sha256(b"# tiny").hexdigest()),
        RepoFile("tiny-Q4_K_M.gguf", 1000, hashlib.sha256(payload(1000)).hexdigest()),
    ]
    assert hub.requests[0]["path"] == f"/api/models/{REPO}/tree/main?recursive=true"


async def test_listing_falls_back_to_siblings(hub, downloader_factory):
    hub.tree_api = False
    hub.files[(REPO, "tiny-Q8_0.gguf")] = payload(10)
    downloader, _ = downloader_factory()
    assert await downloader.list_files(REPO) == [
        RepoFile("tiny-Q8_0.gguf", 10, hashlib.sha256(payload(10)).hexdigest())
    ]
    assert hub.requests[-1]["path"] == f"/api/models/{REPO}?blobs=true"


# ============================================================== downloads


async def test_a_dropped_connection_is_resumed_with_range_and_verified(hub, downloader_factory, tmp_path):
    data = payload(1_500_000)
    hub.files[(REPO, "tiny-Q4_K_M.gguf")] = data
    hub.drop_once.add((REPO, "tiny-Q4_K_M.gguf"))
    downloader, events = downloader_factory()

    path = await downloader.download(REPO, "tiny-Q4_K_M.gguf", tmp_path)

    assert path == tmp_path / "tiny-Q4_K_M.gguf"
    assert path.read_bytes() == data
    assert not (tmp_path / "tiny-Q4_K_M.gguf.part").exists()
    transfers = hub.downloads_of("tiny-Q4_K_M.gguf")
    assert [t["range"] for t in transfers] == [None, f"bytes={len(data) // 2}-"]
    final = events[-1]
    assert (final.state, final.attempts, final.verified) == ("done", 2, True)
    assert final.resumed_from == len(data) // 2
    assert final.sha256 == hashlib.sha256(data).hexdigest()  # learnt from X-Linked-Etag on the redirect
    assert (final.bytes_done, final.bytes_total) == (len(data), len(data))
    states = [e.state for e in events]
    assert states[0] == "queued" and "downloading" in states and "verifying" in states


async def test_a_wrong_checksum_deletes_the_download(hub, downloader_factory, tmp_path):
    hub.files[(REPO, "bad.gguf")] = payload(5000)
    hub.wrong_sha.add((REPO, "bad.gguf"))
    downloader, events = downloader_factory()
    with pytest.raises(ChecksumMismatchError, match="does not match"):
        await downloader.download(REPO, "bad.gguf", tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert events[-1].state == "failed" and "sha256" in events[-1].error


async def test_the_speed_limit_is_honoured(hub, downloader_factory, tmp_path):
    hub.files[(REPO, "slow.gguf")] = payload(300_000)
    downloader, events = downloader_factory(speed_limit=200_000)
    started = time.monotonic()
    await downloader.download(REPO, "slow.gguf", tmp_path)
    elapsed = time.monotonic() - started
    assert 1.2 <= elapsed <= 3.0  # 300 kB at 200 kB/s, less a 0.1 s burst
    speeds = [e.speed for e in events if e.state == "downloading" and e.speed]
    assert speeds and max(speeds) < 200_000 * 1.5


async def test_missing_files_and_repositories_say_so(hub, downloader_factory, tmp_path):
    hub.files[(REPO, "a.gguf")] = b"x"
    downloader, _ = downloader_factory()
    with pytest.raises(HubNotFoundError, match=r"acme/tiny-GGUF/nope\.gguf@main was not found"):
        await downloader.download(REPO, "nope.gguf", tmp_path)
    with pytest.raises(HubNotFoundError, match="acme/missing@main was not found"):
        await downloader.list_files("acme/missing")
    assert list(tmp_path.iterdir()) == []


async def test_private_repositories_need_the_token(hub, downloader_factory, tmp_path):
    hub.files[("acme/private", "p.gguf")] = payload(100)
    hub.private.add("acme/private")
    anonymous, _ = downloader_factory()
    with pytest.raises(HubAuthError, match="set a hub token"):
        await anonymous.download("acme/private", "p.gguf", tmp_path)
    with pytest.raises(HubAuthError):
        await anonymous.list_files("acme/private")

    with_token, _ = downloader_factory(token=TOKEN)
    path = await with_token.download("acme/private", "p.gguf", tmp_path)
    assert path.read_bytes() == payload(100)
    assert hub.requests[-2]["auth"] == f"Bearer {TOKEN}"  # the resolve request


async def test_cancel_keeps_the_part_and_a_new_start_resumes_it(hub, downloader_factory, tmp_path):
    data = payload(1_000_000)
    hub.files[(REPO, "big.gguf")] = data
    downloader, _ = downloader_factory(speed_limit=400_000)
    job = downloader.start(REPO, "big.gguf", tmp_path)
    while job.bytes_done < 150_000:
        await asyncio.sleep(0.02)
    assert downloader.cancel(job.id)
    with pytest.raises(asyncio.CancelledError):
        await downloader.wait(job.id)
    assert job.state == "cancelled"
    part = tmp_path / "big.gguf.part"
    kept = part.stat().st_size
    assert 150_000 <= kept < len(data)
    assert not (tmp_path / "big.gguf").exists()

    downloader.set_speed_limit(0)
    resumed = downloader.start(REPO, "big.gguf", tmp_path)
    path = await downloader.wait(resumed.id)
    assert path.read_bytes() == data
    assert resumed.verified and resumed.resumed_from == kept
    assert hub.downloads_of("big.gguf")[-1]["range"] == f"bytes={kept}-"
    assert downloader.cancel(resumed.id) is False  # already finished


async def test_a_hub_that_ignores_range_restarts_the_file(hub, downloader_factory, tmp_path):
    data = payload(200_000)
    hub.files[(REPO, "r.gguf")] = data
    hub.drop_once.add((REPO, "r.gguf"))
    hub.ignore_range = True
    hub.redirect = False  # the file itself answers, with the sha256 as its ETag
    downloader, _ = downloader_factory()
    path = await downloader.download(REPO, "r.gguf", tmp_path)
    assert path.read_bytes() == data
    job = next(iter(downloader.jobs.values()))
    assert (job.attempts, job.resumed_from, job.verified) == (2, 0, True)


async def test_an_already_complete_part_is_verified_and_kept(hub, downloader_factory, tmp_path):
    data = payload(50_000)
    hub.files[(REPO, "done.gguf")] = data
    (tmp_path / "done.gguf.part").write_bytes(data)
    downloader, _ = downloader_factory()
    path = await downloader.download(REPO, "done.gguf", tmp_path)
    assert path.read_bytes() == data
    assert hub.downloads_of("done.gguf")[-1]["range"] == f"bytes={len(data)}-"  # answered 416


async def test_server_errors_are_retried_then_reported(hub, downloader_factory, tmp_path):
    hub.files[(REPO, "e.gguf")] = b"x"
    hub.fail_with_500.add((REPO, "e.gguf"))
    downloader, events = downloader_factory(max_attempts=3)
    with pytest.raises(HubServerError, match="HTTP 500"):
        await downloader.download(REPO, "e.gguf", tmp_path)
    assert events[-1].attempts == 3
    assert len([r for r in hub.requests if "/resolve/" in r["path"]]) == 3


async def test_split_gguf_downloads_every_part(hub, downloader_factory, tmp_path):
    for n in (1, 2, 3):
        hub.files[(REPO, f"Q8_0/big-0000{n}-of-00003.gguf")] = payload(20_000, seed=n)
    hub.files[(REPO, "other.gguf")] = b"x"
    downloader, _ = downloader_factory()
    jobs = await downloader.start_gguf(REPO, "big-00002-of-00003.gguf", tmp_path)
    paths = [await downloader.wait(job.id) for job in jobs]
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [f"Q8_0/big-0000{n}-of-00003.gguf" for n in (1, 2, 3)]
    assert all(job.verified for job in jobs)


async def test_a_second_start_of_the_same_file_is_refused(hub, downloader_factory, tmp_path):
    hub.files[(REPO, "one.gguf")] = payload(300_000)
    downloader, _ = downloader_factory(speed_limit=300_000)
    job = downloader.start(REPO, "one.gguf", tmp_path)
    with pytest.raises(HubError, match="already being downloaded"):
        downloader.start(REPO, "one.gguf", tmp_path)
    downloader.cancel(job.id)


async def test_names_cannot_escape_the_model_directory(downloader_factory, tmp_path):
    downloader, _ = downloader_factory()
    for name in ("../evil.gguf", "/etc/evil.gguf"):
        with pytest.raises(HubError, match="outside the model directory"):
            downloader.start(REPO, name, tmp_path)


# ================================================================== pieces


def test_gguf_parts_expands_split_files_and_finds_base_names():
    files = [RepoFile(f"Q4/m-0000{n}-of-00002.gguf") for n in (1, 2)] + [RepoFile("m-Q8_0.gguf")]
    assert [f.path for f in gguf_parts(files, "m-00001-of-00002.gguf")] == [
        "Q4/m-00001-of-00002.gguf",
        "Q4/m-00002-of-00002.gguf",
    ]
    assert gguf_parts(files, "m-Q8_0.gguf") == [RepoFile("m-Q8_0.gguf")]
    with pytest.raises(HubNotFoundError):
        gguf_parts(files, "absent.gguf")
    with pytest.raises(HubNotFoundError, match="part 2 of 2"):
        gguf_parts(files[:1], "m-00001-of-00002.gguf")


async def test_token_bucket_paces_consumers():
    bucket = TokenBucket(1_000_000, burst_seconds=0)
    started = time.monotonic()
    for _ in range(10):
        await bucket.consume(20_000)  # 200 kB at 1 MB/s
    assert 0.15 <= time.monotonic() - started <= 0.6
    bucket.rate = 0
    started = time.monotonic()
    await bucket.consume(10**9)
    assert time.monotonic() - started < 0.05
