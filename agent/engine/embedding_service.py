"""The asyncio side of embeddings: an :class:`Embedder` on a thread of its own.

It loads its own copy of the model; llama.cpp maps the file, so the pages are shared with the
generation engine's copy and the second load costs little memory.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from agent.engine.embedder import Embedder, EmbeddingOutcome
from agent.engine.model import Model
from paddler.protocol import CpuRepack

__all__ = ["EmbeddingOutcome", "EmbeddingService"]

T = TypeVar("T")


class EmbeddingService:
    def __init__(
        self,
        model_path: Path,
        *,
        context_size: int = 2048,
        threads: int | None = None,
        max_sequences: int = 8,
        cpu_repack: CpuRepack = "auto",
    ) -> None:
        self.model_path = Path(model_path)
        self.context_size = context_size
        self.threads = threads
        self.max_sequences = max_sequences
        self.cpu_repack: CpuRepack = cpu_repack
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="paddler-embed")
        self._model: Model | None = None
        self._embedder: Embedder | None = None

    @property
    def dimensions(self) -> int:
        return self._loaded().dimensions

    async def load(self) -> None:
        """Load the model and make the embedding context, off the event loop; idempotent."""
        if self._embedder is None:
            await self._run(self._load)

    def _load(self) -> None:
        if self._embedder is not None:
            return
        model = Model.load(self.model_path, cpu_repack=self.cpu_repack)
        try:
            self._embedder = Embedder(
                model,
                context_size=self.context_size,
                threads=self.threads,
                max_sequences=self.max_sequences,
            )
        except BaseException:
            model.close()
            raise
        self._model = model

    async def embed(
        self, inputs: Sequence[str], stop: threading.Event | None = None
    ) -> EmbeddingOutcome:
        """Embed ``inputs`` (one job at a time: jobs queue for the embedding thread).

        Once ``stop`` is set the work ends before its next batch (EmbeddingStopped).
        """
        embedder = self._loaded()
        return await self._run(lambda: embedder.embed(inputs, stop))

    def _loaded(self) -> Embedder:
        if self._embedder is None:
            raise RuntimeError("the embedding model is not loaded")
        return self._embedder

    async def _run(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    def close(self) -> None:
        """Wait for running work, then free the context and the model."""
        self._executor.shutdown(wait=True)
        if self._embedder is not None:
            self._embedder.close()
            self._embedder = None
        if self._model is not None:
            self._model.close()
            self._model = None
