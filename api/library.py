"""The model library at run time: scanned files, their presets (in the database), generated models, downloads.

:class:`LibraryService` is owned by the :class:`api.runtime.Runtime`. It

* scans ``library.paths`` (in a worker thread) with :class:`core.library.ModelLibrary`,
* keeps every model's preset in memory, loaded from and saved to the ``library_presets`` table,
* turns files without a config entry into models (:mod:`core.library_models`); the runtime merges them
  into the config it serves (:meth:`merged`), so every API — OpenAI, Anthropic, Ollama, ``/upstream`` — sees them,
* pushes the presets' live settings to the swap engine (slot limits, idle timeouts) and answers the
  gateway's per-request question "which sampling values are forced on this model" (:meth:`sampling_for`),
* holds back a changed launch setting (context size, GPU layers…) while the model runs: its command keeps
  the settings it was started with until the model stops, then the next start uses the new ones,
* runs hub downloads into the first library path and publishes their progress (``download.progress``)
  on the runtime's event bus; a finished download triggers a rescan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from api.db.models import LibraryPreset
from core.config.schema import Config, LibraryConfig
from core.downloads import DownloadProgress, HubDownloader, HubError, HubNotFoundError, HubSettings, RepoFile
from core.library import LibraryModel, ModelLibrary, quantization_from_filename
from core.library_models import GeneratedModels, configured_context, generate_library_models, merge_library_models
from core.presets import (
    LAUNCH_FIELDS,
    ModelPreset,
    PresetError,
    RestoreReport,
    SamplingOverrides,
    changed_fields,
    export_library,
    restart_needed,
    restore_presets,
)
from core.swap.engine import ServingControls

if TYPE_CHECKING:
    from api.runtime import Runtime

log = logging.getLogger("switchyard.library")

RUNNING_STATES = ("starting", "ready", "stopping")


class PresetStore:
    """The ``library_presets`` table: one row per model id, the preset's set fields as JSON."""

    def __init__(self, engine: AsyncEngine):
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def load_all(self) -> dict[str, ModelPreset]:
        async with self._sessions() as session:
            rows = (await session.scalars(select(LibraryPreset))).all()
        out = {}
        for row in rows:
            try:
                out[row.model_id] = ModelPreset.from_dict(row.preset)
            except PresetError as exc:  # written by an older version, perhaps: skip it, say so
                log.warning("ignoring the stored preset of %s: %s", row.model_id, exc)
        return out

    async def save(self, presets: Mapping[str, ModelPreset]) -> None:
        if not presets:
            return
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            rows = {
                row.model_id: row
                for row in (
                    await session.scalars(select(LibraryPreset).where(LibraryPreset.model_id.in_(list(presets))))
                ).all()
            }
            for model_id, preset in presets.items():
                row = rows.get(model_id)
                if row is None:
                    session.add(LibraryPreset(model_id=model_id, preset=preset.as_dict(), updated_at=now))
                else:
                    row.preset = preset.as_dict()
                    row.updated_at = now


class LibraryService:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.store = PresetStore(runtime.alchemy.get_engine())
        self.presets: dict[str, ModelPreset] = {}
        self.entries: list[LibraryModel] = []
        self.generated = GeneratedModels()
        self._scanner = ModelLibrary([])
        self._scanned_paths: tuple[str, ...] | None = None
        self._ports: dict[str, int] = {}
        self._sampling: dict[str, SamplingOverrides] = {}
        self._downloader: HubDownloader | None = None
        self._rescan_task: asyncio.Task[Any] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---------------------------------------------------------------- lifecycle

    @property
    def config(self) -> LibraryConfig | None:
        return self.runtime.file_config.library

    @property
    def paths(self) -> list[Path]:
        config = self.config
        return [Path(os.path.expanduser(p)) for p in config.paths] if config else []

    async def start(self) -> None:
        self.presets = await self.store.load_all()

    async def stop(self) -> None:
        for task in (self._rescan_task, *self._tasks):
            if task is not None:
                task.cancel()
        if self._downloader is not None:
            await self._downloader.aclose()

    # ------------------------------------------------------------ scan & merge

    async def rescan(self) -> dict[str, Any]:
        """Scan the library paths again and serve what changed; returns what was added and removed."""
        before = set(self.generated.models)
        await self._scan()
        await self.runtime.apply_config()
        after = set(self.generated.models)
        return {"models": len(self.entries), "added": sorted(after - before), "removed": sorted(before - after)}

    async def _scan(self) -> None:
        paths = self.paths
        self._scanner.directories = paths
        self.entries = await asyncio.to_thread(self._scanner.scan) if paths else []
        self._scanned_paths = tuple(str(p) for p in paths)

    async def merged(self, file_config: Config) -> Config:
        """`file_config` with the library's generated models; called by the runtime for every config change."""
        if tuple(str(p) for p in self.paths) != self._scanned_paths:
            await self._scan()
        engine = self.runtime.engine
        keep: dict[str, ModelPreset] = {}
        for model_id, applied in self.generated.launch.items():
            if engine.state_of(model_id) in RUNNING_STATES and restart_needed(applied, self._wanted(model_id)):
                keep[model_id] = applied  # a running model keeps its command until it stops
        generated = generate_library_models(self.entries, self.presets, file_config, ports=self._ports, launch=keep)
        self.generated = generated
        self._ports = generated.ports
        self._apply_live_settings()
        return merge_library_models(file_config, generated)

    def _wanted(self, model_id: str) -> ModelPreset:
        preset = self.presets.get(model_id) or ModelPreset()
        entry = self.entry(model_id)
        if preset.embedding is None and entry is not None and entry.is_embedding:
            preset = replace(preset, embedding=True)
        return preset

    def restart_pending(self, model_id: str) -> bool:
        """The preset's launch settings differ from those the model's current command was built with."""
        applied = self.generated.launch.get(model_id)
        return applied is not None and restart_needed(applied, self._wanted(model_id))

    def _apply_live_settings(self) -> None:
        controls: dict[str, ServingControls] = {}
        sampling: dict[str, SamplingOverrides] = {}
        for model_id in self.generated.models:
            preset = self.presets.get(model_id)
            if preset is None:
                continue
            if preset.max_concurrent or preset.queue_depth is not None or preset.idle_timeout is not None:
                controls[model_id] = ServingControls(
                    max_concurrent=preset.max_concurrent or 0,
                    queue_depth=preset.queue_depth if preset.max_concurrent else None,
                    idle_timeout=preset.idle_timeout,
                )
            if not preset.sampling.empty:
                sampling[model_id] = preset.sampling
        self._sampling = sampling
        self.runtime.engine.set_serving_controls(controls)

    def sampling_for(self, model_id: str) -> SamplingOverrides | None:
        """Sampling values a preset forces onto every request to `model_id` (hot path: a dict lookup)."""
        return self._sampling.get(model_id)

    def on_model_state(self, model_id: str, state: str, data: dict[str, Any]) -> None:
        """The swap engine's state callback: apply held-back launch settings once their model has stopped."""
        if state not in ("stopped", "failed") or not self.restart_pending(model_id):
            return

        async def apply() -> None:
            with contextlib.suppress(Exception):
                await self.runtime.apply_config()

        task = asyncio.create_task(apply(), name=f"library-apply:{model_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ----------------------------------------------------------------- lookups

    def entry(self, model_id: str) -> LibraryModel | None:
        for entry in self.entries:
            if entry.id == model_id:
                return entry
        return None

    async def describe_file(self, path: str) -> LibraryModel | None:
        """Metadata of a GGUF file a config model loads (cached by path, mtime and size)."""
        if not path.lower().endswith(".gguf") or not os.path.isfile(path):
            return None
        described = await asyncio.to_thread(self._scanner.describe, path)
        return None if described.problem else described

    def describe(self, entry: LibraryModel) -> dict[str, Any]:
        """One model as ``GET /api/library`` lists it."""
        data = entry.as_dict()
        data["has_chat_template"] = bool(data.pop("chat_template", None))
        model_id = entry.id
        generated = self.generated.models.get(model_id)
        status = {s["model"]: s for s in self.runtime.engine.status()}.get(model_id, {})
        preset = self.presets.get(model_id) or ModelPreset()
        data.update(
            served_as=model_id if generated is not None and model_id in self.runtime.config.library_models else None,
            served_by=self.generated.served_by.get(model_id),
            not_served=self.generated.skipped.get(model_id),
            preset=preset.as_dict(),
            restart_pending=self.restart_pending(model_id),
            context_length=(configured_context(generated) if generated else None) or entry.context_length,
            state=status.get("state"),
            in_flight=status.get("in_flight", 0),
            queued=status.get("queued", 0),
            origin=status.get("origin"),
        )
        return data

    # ----------------------------------------------------------------- presets

    async def set_preset(self, model_id: str, raw: Any, *, restart: bool = False) -> dict[str, Any]:
        """Replace a model's preset. Live settings apply at once; launch settings of a running model wait
        for its restart (or restart it now with `restart`). Raises PresetError or KeyError (unknown model)."""
        if self.entry(model_id) is None:
            raise KeyError(model_id)
        new = ModelPreset.from_dict(raw)
        old = self.presets.get(model_id) or ModelPreset()
        await self.store.save({model_id: new})
        self.presets[model_id] = new
        running = self.runtime.engine.state_of(model_id) in RUNNING_STATES
        if restart and running and self.restart_pending(model_id):
            await self.runtime.engine.unload([model_id], reason="preset changed")
        await self.runtime.apply_config()
        changed = changed_fields(old, new)
        pending = self.restart_pending(model_id)
        if pending:
            message = (
                "saved; the live settings apply now, the launch settings "
                f"({', '.join(sorted(set(changed) & LAUNCH_FIELDS))}) need a restart: they apply the next time the "
                "model starts (unload it, or PUT again with ?restart=true)"
            )
        elif changed:
            message = "saved and applied"
        else:
            message = "nothing changed"
        return {
            "model": model_id,
            "preset": new.as_dict(),
            "changed": changed,
            "restart_needed": pending,
            "applied": not pending,
            "message": message,
        }

    def export(self) -> dict[str, Any]:
        return export_library([e.as_dict() for e in self.entries], self.presets)

    async def restore(self, document: Any) -> RestoreReport:
        """Merge an exported document into the stored presets (never overwriting a set value)."""
        report = restore_presets(document, self.presets, {e.id for e in self.entries})
        changed = {m: report.presets[m] for m in (*report.added, *report.merged)}
        await self.store.save(changed)
        self.presets = dict(report.presets)
        await self.runtime.apply_config()
        return report

    # --------------------------------------------------------------- downloads

    @property
    def downloader(self) -> HubDownloader:
        if self._downloader is None:
            settings = self.runtime.settings
            self._downloader = HubDownloader(
                HubSettings(
                    base_url=settings.hf_base_url,
                    token=settings.hf_token or None,
                    speed_limit=settings.download_speed_limit,
                ),
                on_progress=self._on_progress,
            )
        return self._downloader

    def downloads(self) -> list[dict[str, Any]]:
        if self._downloader is None:
            return []
        return [job.as_dict() for job in self._downloader.jobs.values()]

    async def start_download(
        self, repo: str, *, filename: str | None = None, quantization: str | None = None, revision: str = "main"
    ) -> list[DownloadProgress]:
        """Download a GGUF file (every part of a split one) into the first library path.

        Give `filename`, or `quantization` ("Q4_K_M") to pick the repository's file of that quantization.
        Raises LookupError without a library path, HubError for the hub's answers.
        """
        paths = self.paths
        if not paths:
            raise LookupError("downloads go to the first library path: set library.paths in config.yaml")
        downloader = self.downloader
        if filename:
            return await downloader.start_gguf(repo, filename, paths[0], revision=revision)
        if not quantization:
            raise HubError("give a file name or a quantization")
        files = await downloader.list_files(repo, revision)
        filename = pick_quantization(files, quantization)
        return await downloader.start_gguf(repo, filename, paths[0], revision=revision)

    def cancel_download(self, job_id: str) -> bool:
        if self._downloader is None or job_id not in self._downloader.jobs:
            raise KeyError(job_id)
        return self._downloader.cancel(job_id)

    def _on_progress(self, job: DownloadProgress) -> None:
        self.runtime.events.publish("download.progress", **job.as_dict())
        if job.state == "done":
            self._schedule_rescan()

    def _schedule_rescan(self) -> None:
        if self._rescan_task is not None and not self._rescan_task.done():
            return

        async def rescan_soon() -> None:
            await asyncio.sleep(0.2)  # the other parts of a split file finish together
            try:
                await self.rescan()
            except Exception:
                log.exception("rescan after a download failed")

        self._rescan_task = asyncio.create_task(rescan_soon(), name="library-rescan")


def pick_quantization(files: list[RepoFile], quantization: str) -> str:
    """The repository file (first part of a split one) of the wanted quantization, e.g. "Q4_K_M"."""
    wanted = quantization.strip().upper()
    ggufs = [f.path for f in files if f.path.lower().endswith(".gguf") and "mmproj" not in f.path.lower()]
    matches = sorted({_first_part(p) for p in ggufs if quantization_from_filename(p) == wanted})
    if not matches:
        available = sorted({q for q in (quantization_from_filename(p) for p in ggufs) if q})
        raise HubNotFoundError(
            f"no {wanted} GGUF file in the repository; available: {', '.join(available) or 'none'}", 404
        )
    if len(matches) > 1:
        raise HubError(f"several {wanted} files: {', '.join(matches)}; name the file instead")
    return matches[0]


def _first_part(path: str) -> str:
    import re

    return re.sub(r"-\d{5}-of-(\d{5})\.gguf$", r"-00001-of-\1.gguf", path, flags=re.IGNORECASE)
