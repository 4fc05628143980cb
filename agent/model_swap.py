"""What an agent runs, and how to build the engine for a pool's new desired state.

:mod:`agent.served_model` drains and unloads; this module says whether a desired state
changes anything and makes the new engine (and embedding service) with the old ones' tuning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.engine.embedding_service import EmbeddingService
from agent.engine.engine import Engine
from agent.model_sources import ModelFetcher, default_cache_dir, parse_model_source
from paddler.protocol import DesiredState

# a model source (path, URL or s3://) -> the fetcher that puts it on disk
ResolveModel = Callable[[str], ModelFetcher]


def resolve_locally(source: str) -> ModelFetcher:
    """A fetcher into the default cache, with the standard AWS configuration for s3://."""
    return ModelFetcher(parse_model_source(source), default_cache_dir())


@dataclass(frozen=True)
class ModelPlan:
    """The model and engine settings an agent runs with."""

    model_source: str
    slots: int
    chat_template: str | None
    context_size: int

    @classmethod
    def of_engine(cls, engine: Engine, model_source: str) -> ModelPlan:
        return cls(
            model_source, engine.slots_total, engine.chat_template_override, engine.context_size
        )

    def desired(self, message: DesiredState) -> ModelPlan:
        """The plan ``message`` asks for; what it leaves out keeps this (start-up) plan's value."""
        return ModelPlan(
            model_source=message.model_source,
            slots=message.slots,
            chat_template=(
                self.chat_template if message.chat_template is None else message.chat_template
            ),
            context_size=message.context_size or self.context_size,
        )


def build_engine(plan: ModelPlan, model_path: Path, like: Engine) -> Engine:
    """An engine for ``plan``'s model at ``model_path``, tuned like ``like``."""
    return Engine(
        model_path,
        plan.slots,
        context_size=plan.context_size,
        threads=like.threads,
        batch_size=like.batch_size,
        kv_size=like.kv_size,
        prompt_cache=like.prompt_cache,
        chat_template=plan.chat_template,
        cpu_repack=like.cpu_repack,
    )


def rebuild_embeddings(old: EmbeddingService | None, model_path: Path) -> EmbeddingService | None:
    """An embedding service for the new model, sized like ``old`` (None if there was none)."""
    if old is None:
        return None
    return EmbeddingService(
        model_path,
        context_size=old.context_size,
        threads=old.threads,
        max_sequences=old.max_sequences,
        cpu_repack=old.cpu_repack,
    )
