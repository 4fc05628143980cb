"""The model an agent serves: fetched and loaded at start-up, then swapped for each newer
desired state of its pool (drain, unload, fetch, load, report)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from agent.engine.embedding_service import EmbeddingService
from agent.engine.engine import Engine
from agent.model_sources import (
    DownloadProgress,
    ModelSourceError,
    ProgressCallback,
    forget_download,
)
from agent.model_swap import (
    ModelPlan,
    ResolveModel,
    build_engine,
    rebuild_embeddings,
    resolve_locally,
)
from paddler import protocol

__all__ = ["FetchModel", "Host", "ServedModel"]

logger = logging.getLogger("paddler.agent")

LOGGED_PROGRESS_STEPS = 10  # log a download's progress every 10%

FetchModel = Callable[[ProgressCallback], Awaitable[object]]


class Host(Protocol):
    """The agent around the model: its state, its reports and its running jobs."""

    @property
    def state(self) -> protocol.AgentState: ...

    def set_state(self, state: protocol.AgentState, issues: tuple[str, ...] = ()) -> None: ...

    def report_status(self) -> None: ...

    async def jobs_finished(self) -> None: ...


class ServedModel:
    """The engine (and embedding service) jobs run on, replaced whole by a swap."""

    def __init__(
        self,
        engine: Engine,
        host: Host,
        *,
        embeddings: EmbeddingService | None = None,
        model_source: str | None = None,
        fetch_model: FetchModel | None = None,
        resolve_model: ResolveModel | None = None,
    ) -> None:
        """``fetch_model`` puts the model file where ``engine`` will load it from (a download,
        reporting its progress). ``resolve_model`` fetches the models a desired state names."""
        self.engine = engine
        self.embeddings = embeddings
        self.model_source = model_source or str(engine.model_path)
        self.fetch_model = fetch_model
        self.resolve_model = resolve_model or resolve_locally
        self.applied_version = 0  # the pool's desired-state version this agent runs
        self.download_progress: float | None = None
        self._host = host
        self._startup_plan = ModelPlan.of_engine(engine, self.model_source)
        self._plan = self._startup_plan
        self._loader: asyncio.Task[None] | None = None
        self._swap: asyncio.Task[None] | None = None
        self._target_version = 0

    def start_loading(self) -> None:
        self._loader = asyncio.create_task(self._load())

    def offer(self, desired: protocol.DesiredState) -> None:
        """Apply ``desired`` (after the load or swap under way) if it is newer than any yet."""
        if desired.version > max(self.applied_version, self._target_version):
            self._target_version = desired.version
            self._swap = asyncio.create_task(self._apply(desired, self._swap))

    def cancel(self) -> None:
        """Stop loading or swapping."""
        if self._loader is not None:
            self._loader.cancel()
        if self._swap is not None:
            self._swap.cancel()

    async def _load(self) -> None:
        if self.fetch_model is not None:
            try:
                await self.fetch_model(self._on_download_progress)
            except Exception as error:
                unexpected = not isinstance(error, ModelSourceError)
                logger.error("could not fetch the model: %s", error, exc_info=unexpected)
                self._host.set_state("error", (f"model could not be fetched: {error}",))
                return
        try:
            await self.engine.load()
            if self.embeddings is not None:
                await self.embeddings.load()
        except Exception as error:
            logger.exception("could not load the model")
            if self.fetch_model is not None and forget_download(self.engine.model_path):
                logger.warning(
                    "deleted %s from the model cache: it did not load", self.engine.model_path
                )
            self._host.set_state("error", (f"model failed to load: {error}",))
            return
        logger.info(
            "model %s loaded with %d slots", self.engine.model_name, self.engine.slots_total
        )
        self._host.set_state("ready")

    def _on_download_progress(self, progress: DownloadProgress) -> None:
        fraction = progress.fraction
        previous = self.download_progress
        self.download_progress = fraction
        if fraction is not None and (
            previous is None
            or int(fraction * LOGGED_PROGRESS_STEPS) > int(previous * LOGGED_PROGRESS_STEPS)
        ):
            logger.info("model download %.0f%% (%d bytes)", fraction * 100, progress.done_bytes)
        self._host.report_status()

    async def _apply(
        self, desired: protocol.DesiredState, previous: asyncio.Task[None] | None
    ) -> None:
        """Adopt the pool's desired state, or drain, unload, fetch, load and report; a model
        that cannot be loaded leaves the agent in ``error`` until a later one loads."""
        await asyncio.gather(
            *(task for task in (previous, self._loader) if task), return_exceptions=True
        )
        plan = self._startup_plan.desired(desired)
        if plan == self._plan and self._host.state == "ready":
            logger.info("desired state v%d changes nothing here: adopted", desired.version)
            self.applied_version = desired.version
            self._host.set_state("ready")
            return
        logger.info(
            "desired state v%d: draining, then loading %s", desired.version, plan.model_source
        )
        self._host.set_state("draining")
        await self._host.jobs_finished()
        self.engine.close()
        if self.embeddings is not None:
            self.embeddings.close()
        self.download_progress = None
        self._host.set_state("loading")
        try:
            fetcher = self.resolve_model(plan.model_source)
            path = await fetcher.fetch(self._on_download_progress)
        except Exception as error:
            self._failed(desired, error)
            return
        try:
            engine = build_engine(plan, path, like=self.engine)
            await engine.load()
            embeddings = rebuild_embeddings(self.embeddings, path)
            if embeddings is not None:
                await embeddings.load()
        except Exception as error:
            fetcher.forget()
            self._failed(desired, error)
            return
        self.engine, self.embeddings, self._plan = engine, embeddings, plan
        self.model_source = plan.model_source
        self.applied_version = desired.version
        logger.info("desired state v%d applied: serving %s", desired.version, engine.model_name)
        self._host.set_state("ready")

    def _failed(self, desired: protocol.DesiredState, error: Exception) -> None:
        """A model that cannot be fetched or loaded leaves the agent in ``error``."""
        logger.error("desired state v%d failed: %s", desired.version, error, exc_info=True)
        issue = f"desired state v{desired.version} could not be applied: {error}"
        self._host.set_state("error", (issue,))
