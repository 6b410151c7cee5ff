"""Download GGUF files from a Hugging Face-compatible hub, resumably, at a bounded speed, with verification.

The hub API used is small and widely mirrored:

* ``GET {base}/api/models/{repo}/tree/{revision}?recursive=true`` lists files with their size and, for LFS
  files, the sha256 (``lfs.oid``); ``GET {base}/api/models/{repo}`` (``siblings``) is the fallback;
* ``GET {base}/{repo}/resolve/{revision}/{path}`` serves a file, usually by redirecting to a CDN. The
  redirect carries ``X-Linked-Etag`` (the LFS sha256) and ``X-Linked-Size``; ``ETag`` is used when it is a
  sha256 too.

A download writes ``<name>.part`` next to the destination and resumes it with an HTTP ``Range`` request after
a dropped connection (retried with exponential backoff by tenacity) or a later :meth:`HubDownloader.start`
of a cancelled job. The file is hashed while it is written (the kept part is hashed first on resume), is
checked against the hub's sha256 when one is known, and only then renamed into place, so a model directory
never holds a half-written ``.gguf``. One token bucket limits the speed of all downloads together.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import quote

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

DEFAULT_HUB_URL = "https://huggingface.co"
PROGRESS_INTERVAL = 0.25  # seconds between progress events while bytes flow

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHARD = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<total>\d{5})\.gguf$", re.IGNORECASE)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")

DownloadState = Literal["queued", "downloading", "verifying", "done", "failed", "cancelled"]


@dataclass(frozen=True, slots=True)
class HubSettings:
    base_url: str = DEFAULT_HUB_URL
    token: str | None = None
    speed_limit: int = 0  # bytes per second for all downloads together; 0 = unlimited
    max_attempts: int = 6
    backoff_initial: float = 1.0  # seconds before the first retry; doubles each time
    backoff_max: float = 60.0
    timeout: float = 30.0  # connect/read timeout; a stalled transfer is retried (and resumed)


class HubError(RuntimeError):
    """A hub request failed; the message says why in words a user can act on."""

    status_code: int | None = None

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


class HubAuthError(HubError):
    """401/403: no token, a wrong token, or a gated repository whose terms were not accepted."""


class HubNotFoundError(HubError):
    """404: the repository, revision or file does not exist (or is private and no token was sent)."""


class HubServerError(HubError):
    """5xx or 429: worth retrying."""


class IncompleteDownloadError(HubError):
    """The transfer ended before the expected size; retried and resumed."""


class ChecksumMismatchError(HubError):
    """The downloaded bytes do not hash to the hub's sha256; the partial file is deleted."""


@dataclass(frozen=True, slots=True)
class RepoFile:
    path: str
    size: int | None = None
    sha256: str | None = None  # the LFS object id, when the hub reports one


@dataclass(slots=True)
class DownloadProgress:
    """The live state of one download; a copy is passed to the progress callback."""

    id: str
    repo: str
    filename: str
    revision: str
    destination: str
    state: DownloadState = "queued"
    bytes_done: int = 0
    bytes_total: int | None = None
    speed: float = 0.0  # bytes per second over the last few seconds
    attempts: int = 0
    resumed_from: int = 0  # bytes kept from an earlier attempt, at the last (re)start
    sha256: str | None = None  # the expected hash, once known
    verified: bool = False
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


class TokenBucket:
    """A byte-rate limiter: :meth:`consume` waits until the bytes fit the rate. ``rate <= 0`` is unlimited."""

    def __init__(self, rate: float, *, burst_seconds: float = 0.1, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._burst_seconds = burst_seconds
        self._tokens = 0.0
        self._last = clock()
        self.rate = rate

    @property
    def rate(self) -> float:
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        self._rate = max(0.0, float(value))
        self._tokens = min(self._tokens, self._capacity)

    @property
    def _capacity(self) -> float:
        return self._rate * self._burst_seconds

    async def consume(self, amount: int) -> None:
        if self._rate <= 0:
            return
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now
        self._tokens -= amount
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self._rate)


def gguf_parts(files: Sequence[RepoFile], filename: str) -> list[RepoFile]:
    """The files to fetch for `filename`: itself, or every part when it is one part of a split GGUF.

    A bare name matches a file in a subfolder when that is unambiguous (hub pages show base names).
    """
    by_path = {f.path: f for f in files}
    wanted = filename.strip().lstrip("/")
    match = by_path.get(wanted)
    if match is None:
        candidates = [f for f in files if PurePosixPath(f.path).name == PurePosixPath(wanted).name]
        if not candidates:
            raise HubNotFoundError(f"{filename} is not in the repository")
        if len(candidates) > 1:
            raise HubError(f"{filename} is ambiguous: {', '.join(c.path for c in candidates)}")
        match = candidates[0]
    name = PurePosixPath(match.path)
    shard = _SHARD.match(name.name)
    if not shard:
        return [match]
    total = int(shard["total"])
    parts = []
    for number in range(1, total + 1):
        part_path = str(name.with_name(f"{shard['stem']}-{number:05d}-of-{shard['total']}.gguf"))
        if part_path not in by_path:
            raise HubNotFoundError(f"part {number} of {total} ({part_path}) is missing from the repository")
        parts.append(by_path[part_path])
    return parts


class HubDownloader:
    """Lists hub repositories and runs downloads as asyncio tasks (one per file), reporting progress.

    `on_progress` is called (in the event loop) with a copy of a job's :class:`DownloadProgress` when its
    state changes and at most every :data:`PROGRESS_INTERVAL` seconds while bytes flow.
    """

    def __init__(
        self,
        settings: HubSettings,
        *,
        on_progress: Callable[[DownloadProgress], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.settings = settings
        self._on_progress = on_progress
        self._clock = clock
        self._bucket = TokenBucket(settings.speed_limit, clock=clock)
        self._client = httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/"),
            follow_redirects=True,
            timeout=httpx.Timeout(settings.timeout),
            transport=transport,
            headers={"User-Agent": "switchyard-downloader/1"},
        )
        self.jobs: dict[str, DownloadProgress] = {}
        self._tasks: dict[str, asyncio.Task[Path]] = {}

    # -------------------------------------------------------------- settings

    def set_speed_limit(self, bytes_per_second: int) -> None:
        """Change the shared limit; running downloads follow it from their next chunk."""
        self.settings = replace(self.settings, speed_limit=bytes_per_second)
        self._bucket.rate = bytes_per_second

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.token}"} if self.settings.token else {}

    # ----------------------------------------------------------------- listing

    async def list_files(self, repo: str, revision: str = "main") -> list[RepoFile]:
        """Every file of a repository at `revision`, with sizes and LFS sha256 where the hub gives them."""
        tree_url: str | None = f"/api/models/{repo}/tree/{quote(revision, safe='')}"
        params: dict[str, str] | None = {"recursive": "true"}
        files: list[RepoFile] = []
        while tree_url:
            response = await self._client.get(tree_url, params=params, headers=self._auth())
            if (
                response.status_code == 404
                and not files
                and "RepoNotFound" not in response.headers.get("x-error-code", "")
            ):
                return await self._list_siblings(repo, revision)
            _raise_for_status(response, f"{repo}@{revision}")
            for item in response.json():
                if isinstance(item, dict) and item.get("type", "file") == "file" and item.get("path"):
                    lfs = item.get("lfs") if isinstance(item.get("lfs"), dict) else {}
                    files.append(RepoFile(item["path"], lfs.get("size", item.get("size")), _sha(lfs.get("oid"))))
            next_link = response.links.get("next", {}).get("url")
            tree_url, params = (next_link, None) if next_link else (None, None)
        return files

    async def _list_siblings(self, repo: str, revision: str) -> list[RepoFile]:
        path = (
            f"/api/models/{repo}" if revision == "main" else f"/api/models/{repo}/revision/{quote(revision, safe='')}"
        )
        response = await self._client.get(path, params={"blobs": "true"}, headers=self._auth())
        _raise_for_status(response, f"{repo}@{revision}")
        files = []
        for sibling in response.json().get("siblings") or []:
            if isinstance(sibling, dict) and sibling.get("rfilename"):
                lfs = sibling.get("lfs") if isinstance(sibling.get("lfs"), dict) else {}
                size = lfs.get("size", sibling.get("size"))
                files.append(RepoFile(sibling["rfilename"], size, _sha(lfs.get("sha256") or lfs.get("oid"))))
        return files

    # --------------------------------------------------------------- downloads

    def start(
        self,
        repo: str,
        filename: str,
        destination_dir: str | os.PathLike[str],
        *,
        revision: str = "main",
        expected: RepoFile | None = None,
    ) -> DownloadProgress:
        """Start downloading one file in the background; returns its (live) progress record.

        Starting a file whose ``.part`` exists resumes it. `expected` (from :meth:`list_files`) supplies
        the size and sha256 when the download response does not.
        """
        destination = _destination(Path(destination_dir), filename)
        for job in self.jobs.values():
            if job.destination == str(destination) and job.state in ("queued", "downloading", "verifying"):
                raise HubError(f"{filename} is already being downloaded to {destination}")
        job = DownloadProgress(uuid.uuid4().hex[:12], repo, filename, revision, str(destination))
        if expected is not None:
            job.bytes_total = expected.size
            job.sha256 = expected.sha256
        self.jobs[job.id] = job
        self._tasks[job.id] = asyncio.create_task(self._run(job), name=f"download {repo}/{filename}")
        self._emit(job)
        return job

    async def start_gguf(
        self, repo: str, filename: str, destination_dir: str | os.PathLike[str], *, revision: str = "main"
    ) -> list[DownloadProgress]:
        """Start a GGUF model download: the file, or all parts of a split file, with sizes and checksums
        from the repository listing."""
        parts = gguf_parts(await self.list_files(repo, revision), filename)
        return [self.start(repo, p.path, destination_dir, revision=revision, expected=p) for p in parts]

    async def download(
        self,
        repo: str,
        filename: str,
        destination_dir: str | os.PathLike[str],
        *,
        revision: str = "main",
        expected: RepoFile | None = None,
    ) -> Path:
        """Download one file and return its final path (raises the :class:`HubError` that stopped it)."""
        job = self.start(repo, filename, destination_dir, revision=revision, expected=expected)
        return await self.wait(job.id)

    async def wait(self, job_id: str) -> Path:
        return await asyncio.shield(self._tasks[job_id])

    def cancel(self, job_id: str) -> bool:
        """Stop a download, keeping its ``.part`` file so that a later start resumes it."""
        task = self._tasks.get(job_id)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    async def aclose(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        await self._client.aclose()

    async def _run(self, job: DownloadProgress) -> Path:
        job.started_at = self._clock()
        try:
            retrying = AsyncRetrying(
                stop=stop_after_attempt(self.settings.max_attempts),
                wait=wait_exponential(multiplier=self.settings.backoff_initial, max=self.settings.backoff_max),
                retry=retry_if_exception(_is_transient),
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    job.attempts += 1
                    await self._attempt(job)
        except asyncio.CancelledError:
            self._finish(job, "cancelled", None)
            raise
        except HubError as exc:
            self._finish(job, "failed", str(exc))
            raise
        except httpx.HTTPError as exc:
            message = f"download of {job.filename} failed after {job.attempts} attempt(s): {exc!r}"
            self._finish(job, "failed", message)
            raise HubError(message) from exc
        except OSError as exc:
            self._finish(job, "failed", f"cannot write {job.destination}: {exc.strerror or exc}")
            raise
        return Path(job.destination)

    async def _attempt(self, job: DownloadProgress) -> None:
        destination = Path(job.destination)
        part = destination.with_name(destination.name + ".part")
        destination.parent.mkdir(parents=True, exist_ok=True)
        offset = part.stat().st_size if part.exists() else 0
        if job.bytes_total is not None and offset > job.bytes_total:
            part.unlink()
            offset = 0
        digest = await asyncio.to_thread(_hash_file, part, offset) if offset else hashlib.sha256()
        headers = {**self._auth(), "Accept-Encoding": "identity"}  # byte ranges of the file itself
        if offset:
            headers["Range"] = f"bytes={offset}-"
        url = f"/{job.repo}/resolve/{quote(job.revision, safe='')}/{quote(job.filename)}"
        job.state = "downloading"
        job.resumed_from = offset
        job.bytes_done = offset
        self._emit(job)
        async with self._client.stream("GET", url, headers=headers) as response:
            for earlier in (*response.history, response):
                _learn_from_headers(job, earlier.headers)
            if response.status_code == 416 and offset:
                total = _content_range_total(response.headers.get("content-range"))
                if total is not None and total == offset:
                    job.bytes_total = total
                    await self._complete(job, part, destination, digest)
                    return
                part.unlink()  # the kept part does not fit the file on the hub: start over
                raise IncompleteDownloadError(f"{job.filename}: the partial file did not match; restarting")
            _raise_for_status(response, f"{job.repo}/{job.filename}@{job.revision}")
            if response.status_code == 206:
                start, total = _content_range(response.headers.get("content-range"))
                if start != offset:
                    part.unlink(missing_ok=True)
                    raise IncompleteDownloadError(f"{job.filename}: the hub resumed at byte {start}, not {offset}")
                if total is not None:
                    job.bytes_total = total
                mode = "ab"
            else:  # 200: the whole file (a hub that ignores Range, or a fresh start)
                if offset:
                    digest = hashlib.sha256()
                    offset = 0
                    job.resumed_from = 0
                    job.bytes_done = 0
                length = response.headers.get("content-length")
                if length and length.isdigit():
                    job.bytes_total = int(length)
                mode = "wb"
            await self._receive(job, response, part, mode, digest)
        if job.bytes_total is not None and job.bytes_done < job.bytes_total:
            raise IncompleteDownloadError(f"{job.filename}: got {job.bytes_done} of {job.bytes_total} bytes")
        await self._complete(job, part, destination, digest)

    async def _receive(
        self, job: DownloadProgress, response: httpx.Response, part: Path, mode: str, digest: Any
    ) -> None:
        samples: deque[tuple[float, int]] = deque([(self._clock(), job.bytes_done)])
        last_event = self._clock()
        # Opening and the final fsync can block for long on a busy disk: they run in a thread. Each write
        # only copies one chunk into the page cache.
        out = await asyncio.to_thread(open, part, mode)
        try:
            async for chunk in response.aiter_raw():  # as received: a cut loses nothing already read
                await self._bucket.consume(len(chunk))
                out.write(chunk)
                digest.update(chunk)
                job.bytes_done += len(chunk)
                now = self._clock()
                samples.append((now, job.bytes_done))
                while len(samples) > 2 and now - samples[0][0] > 3.0:
                    samples.popleft()
                elapsed = now - samples[0][0]
                job.speed = (job.bytes_done - samples[0][1]) / elapsed if elapsed > 0 else 0.0
                if now - last_event >= PROGRESS_INTERVAL:
                    last_event = now
                    self._emit(job)
        finally:
            await asyncio.to_thread(_flush_and_close, out)

    async def _complete(self, job: DownloadProgress, part: Path, destination: Path, digest: Any) -> None:
        job.state = "verifying"
        self._emit(job)
        if job.sha256:
            actual = digest.hexdigest()
            if actual != job.sha256:
                part.unlink(missing_ok=True)
                raise ChecksumMismatchError(
                    f"{job.filename}: sha256 {actual} does not match the hub's {job.sha256}; the download was deleted"
                )
            job.verified = True
        os.replace(part, destination)
        job.speed = 0.0
        self._finish(job, "done", None)

    def _finish(self, job: DownloadProgress, state: DownloadState, error: str | None) -> None:
        job.state = state
        job.error = error
        job.finished_at = self._clock()
        self._emit(job)

    def _emit(self, job: DownloadProgress) -> None:
        if self._on_progress is not None:
            self._on_progress(replace(job))


# ==================================================================== helpers


def _destination(directory: Path, filename: str) -> Path:
    relative = PurePosixPath(filename)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise HubError(f"refusing to write outside the model directory: {filename}")
    return directory.joinpath(*relative.parts)


def _flush_and_close(handle: Any) -> None:
    try:
        handle.flush()
        os.fsync(handle.fileno())
    finally:
        handle.close()


def _hash_file(path: Path, length: int) -> Any:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        remaining = length
        while remaining:
            block = handle.read(min(remaining, 4 * 1024 * 1024))
            if not block:
                break
            digest.update(block)
            remaining -= len(block)
    return digest


def _learn_from_headers(job: DownloadProgress, headers: httpx.Headers) -> None:
    if job.sha256 is None:
        for name in ("x-linked-etag", "etag"):
            sha = _sha(headers.get(name))
            if sha:
                job.sha256 = sha
                break
    linked_size = headers.get("x-linked-size")
    if linked_size and linked_size.isdigit():
        job.bytes_total = int(linked_size)


def _sha(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip().removeprefix("W/").strip('"').lower()
    return text if _SHA256.match(text) else None


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    match = _CONTENT_RANGE.match(value or "")
    if not match:
        return None, None
    return int(match.group(1)), None if match.group(3) == "*" else int(match.group(3))


def _content_range_total(value: str | None) -> int | None:
    match = re.match(r"^bytes \*/(\d+)$", value or "")
    return int(match.group(1)) if match else None


def _raise_for_status(response: httpx.Response, what: str) -> None:
    status = response.status_code
    if status < 400:
        return
    code = response.headers.get("x-error-code", "")
    detail = response.headers.get("x-error-message", "")
    suffix = f" ({detail})" if detail else ""
    if code == "GatedRepo":
        raise HubAuthError(f"{what} is gated: accept its terms on the hub and use a token with access{suffix}", status)
    if status in (401, 403):
        raise HubAuthError(
            f"{what}: access denied (HTTP {status}); set a hub token that can read this repository{suffix}", status
        )
    if status == 404 or code in ("RepoNotFound", "EntryNotFound", "RevisionNotFound"):
        raise HubNotFoundError(f"{what} was not found on the hub (HTTP {status}){suffix}", status)
    if status == 429 or status >= 500:
        raise HubServerError(f"{what}: the hub answered HTTP {status}{suffix}", status)
    raise HubError(f"{what}: the hub answered HTTP {status}{suffix}", status)


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, (httpx.TransportError, HubServerError, IncompleteDownloadError))


__all__ = [
    "DEFAULT_HUB_URL",
    "ChecksumMismatchError",
    "DownloadProgress",
    "DownloadState",
    "HubAuthError",
    "HubDownloader",
    "HubError",
    "HubNotFoundError",
    "HubServerError",
    "HubSettings",
    "IncompleteDownloadError",
    "RepoFile",
    "TokenBucket",
    "gguf_parts",
]
