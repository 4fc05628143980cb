"""The engine benchmark's workload and results: prompts, requests, what a run records.

The rambling prompts every backend is given, the requests built from them, the long
made-up documents of the prefix measurement, and the dataclasses the backends fill in.
"""

from __future__ import annotations

import functools
import random
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.engine.cpu_path import choose_cpu_path
from agent.engine.model import Model
from bench._streams import Load
from paddler.protocol import CpuPath, CpuRepack, GenerationRequest, SamplingParams

CONTEXT_PER_SLOT = 2048
COMPLETIONS = "/v1/completions"

# Plain-text openings (no chat template, no special tokens, so every server tokenizes them
# alike) that SmolLM2 continues greedily for hundreds of tokens without an end of text.
PROMPTS = (
    "The history of the city of Rome, told in great detail. Chapter one:",
    "Once upon a time, in a small village by the sea, there lived",
    "A complete guide to growing tomatoes at home. First, the soil:",
    "The lighthouse keeper's diary, day one. The storm began at dawn and",
    "An introduction to the theory of computation. Section 1.1:",
    "The travels of a merchant along the Silk Road, day by day. Day one:",
    "How the river changed the valley over ten thousand years. In the beginning,",
    "The rules of chess, explained for a beginner, starting with the pawn:",
)
QUESTIONS = (
    "\n\nQuestion: What is the text above mostly about?\nAnswer: The text",
    "\n\nQuestion: Which place is named most often in the text above?\nAnswer: The place",
)
WORDS = (
    *("river", "valley", "harbour", "lantern", "merchant", "winter", "garden", "engine"),
    *("orchard", "quarry", "bridge", "tower", "market", "meadow", "library", "mill", "canal"),
    *("forest", "island", "ledger", "archive", "signal", "copper", "granite", "season"),
    *("harvest", "compass", "voyage", "workshop"),
)


def completion_request(prompt: str, tokens: int) -> GenerationRequest:
    return GenerationRequest(
        kind="completion",
        prompt=prompt,
        sampling=SamplingParams(max_tokens=tokens, temperature=0.0),
    )


def completion_body(model: Path, prompt: str, tokens: int) -> dict[str, Any]:
    return {
        "model": model.stem,
        "prompt": prompt,
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def stream_prompts(streams: int) -> list[str]:
    return [PROMPTS[index % len(PROMPTS)] for index in range(streams)]


# results


@dataclass
class Row:
    """One backend at one number of concurrent streams, over ``--repeat`` runs."""

    streams: int
    loads: list[Load] = field(default_factory=list)
    native_rates: list[float] = field(default_factory=list)  # llama-batched-bench's S_TG
    native_tokens: int = 0

    @property
    def rate(self) -> float:
        """Median aggregate decode tokens/s over the repeats."""
        if self.native_rates:
            return statistics.median(self.native_rates)
        return statistics.median(load.decode_tokens_per_second for load in self.loads)

    @property
    def tokens(self) -> int:
        return self.native_tokens or self.loads[0].tokens

    def gaps(self) -> list[float]:
        return [gap for load in self.loads for gap in load.gaps()]

    @property
    def first_token(self) -> float:
        return statistics.median(load.mean_first_token for load in self.loads)


@dataclass
class Backend:
    label: str
    rows: dict[int, Row] = field(default_factory=dict)
    note: str = ""  # why it was skipped or failed
    failed: bool = False

    def rate(self, streams: int) -> float | None:
        row = self.rows.get(streams)
        return None if row is None else row.rate


@dataclass
class PrefixReport:
    prefix_tokens: int
    first: dict[str, float]  # cache label -> median TTFT of the request that opens a prefix
    second: dict[str, float]  # cache label -> median TTFT of the request that shares it
    cached: dict[str, int]


@dataclass
class Config:
    model: Path
    streams: list[int]
    tokens: int
    repeat: int
    directory: Path
    cpu_repack: CpuRepack = "auto"  # the agent's setting, applied to every side alike

    @property
    def cpu_path(self) -> CpuPath:
        return choose_cpu_path(self.cpu_repack)


async def repeated(
    config: Config,
    row: Row,
    run: Callable[[], Awaitable[Load]],
    warm_up: Callable[[], Awaitable[Any]],
) -> None:
    await warm_up()
    for _ in range(config.repeat):
        row.loads.append(await run())


# prompt tokens, and the long shared prefixes of the prompt-cache measurement


@functools.cache
def tokenizer(model: Path) -> Model:
    """The model as the agent loads it (once), so counts match what the engine reports."""
    return Model.load(model)


def count_tokens(model: Path, text: str) -> int:
    return len(tokenizer(model).tokenize(text))


def long_prefix(model: Path, seed: int, tokens: int = 1000) -> str:
    """A document of made-up sentences, at least ``tokens`` tokens long."""
    rng = random.Random(seed)
    text = f"Document {seed}."
    while count_tokens(model, text) < tokens:
        words = rng.sample(WORDS, 8)
        text += f" The {words[0]} near the {words[1]} kept its {' '.join(words[2:])}."
    return text
