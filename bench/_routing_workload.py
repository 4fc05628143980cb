"""The workload of ``bench/routing.py``: conversations with long histories, played on a pool.

A pool is given ``--conversations`` conversations, ``--at-once`` of them at a time: each
client line takes the next conversation not yet played, plays all its turns, then takes
another, so the conversations start at different times and their turns interleave on the
agents. Before each turn its user thinks a random while (up to ``--think`` seconds: reading
the answer, typing the next question), so that when a follow-up arrives other agents have
free slots too and least-busy routing has a real choice to make, as in a fleet with headroom.
Both pools play the same conversations (same histories, same pauses).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench._streams import percentile

WORDS = (  # noqa: SIM905 (one string reads better than a column of words)
    "harbor lamp keeper tide stone rope gull mist lantern wave anchor sail cliff storm "
    "beacon night shore ledger oil wick glass tower keel current reef signal fog horn "
    "chart compass winter supply boat cargo island north bell"
).split()
WORDS_PER_TOKEN = 0.95  # these words are one SmolLM2 token each, most with their space


@dataclass
class Turn:
    follow_up: bool
    first_token: float  # seconds from sending to the first text
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    ideal_cached: int  # what a slot that served the previous turn holds of this prompt

    @property
    def found(self) -> bool:
        """At least half of what the previous turn left cached was found: the turn went to its
        holder (or to an agent still holding an earlier turn, which covers the history)."""
        return self.cached_tokens >= self.ideal_cached / 2


@dataclass
class Phase:
    mode: str
    turns: list[Turn] = field(default_factory=list)
    seconds: float = 0.0

    def follow_ups(self) -> list[Turn]:
        return [turn for turn in self.turns if turn.follow_up]

    def ttft(self, fraction: float, found: bool | None = None) -> float:
        turns = self.follow_ups()
        if found is not None:
            turns = [turn for turn in turns if turn.found == found]
        return percentile([turn.first_token for turn in turns], fraction)

    @property
    def found_share(self) -> float:
        turns = self.follow_ups()
        return sum(turn.found for turn in turns) / len(turns)

    @property
    def tokens_per_second(self) -> float:
        return sum(turn.completion_tokens for turn in self.turns) / self.seconds

    @property
    def hit_ratio(self) -> float:
        turns = self.follow_ups()
        return sum(t.cached_tokens for t in turns) / sum(t.prompt_tokens for t in turns)

    @property
    def ideal_ratio(self) -> float:
        turns = self.follow_ups()
        return sum(t.ideal_cached for t in turns) / sum(t.prompt_tokens for t in turns)


def history(seed: int, tokens: int) -> str:
    chooser = random.Random(seed)
    return " ".join(chooser.choice(WORDS) for _ in range(int(tokens * WORDS_PER_TOKEN)))


async def stream_turn(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> tuple[str, float, dict[str, Any]]:
    """The answer's text, the seconds to its first text and its usage."""
    sent = time.perf_counter()
    first: float | None = None
    text: list[str] = []
    usage: dict[str, Any] = {}
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {(await response.aread())[:300]!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line.removeprefix("data: "))
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or ():
                piece = (choice.get("delta") or {}).get("content") or ""
                if piece and first is None:
                    first = time.perf_counter() - sent
                text.append(piece)
    if first is None or not usage:
        raise RuntimeError("a turn streamed no text or no usage")
    return "".join(text), first, usage


class Conversation:
    """One conversation of a client: its history, then a user question and an answer a turn."""

    def __init__(self, pool: str, seed: int, args: argparse.Namespace) -> None:
        notes = f"Notes of keeper {seed}: {history(seed, args.history)}"
        self.messages: list[dict[str, str]] = [{"role": "system", "content": notes}]
        self.pool = pool
        self.max_tokens = args.max_tokens
        self.thinking = random.Random(-1 - seed)  # the same pauses on both pools
        self.held = 0  # prompt + answer tokens of the previous turn

    async def turn(self, client: httpx.AsyncClient, number: int) -> Turn:
        question = f"Question {number}: what is note {number}?"
        self.messages.append({"role": "user", "content": question})
        body = {
            "model": self.pool,
            "messages": self.messages,
            "max_tokens": self.max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        text, first, usage = await stream_turn(client, body)
        self.messages.append({"role": "assistant", "content": text})
        prompt, completion = int(usage["prompt_tokens"]), int(usage["completion_tokens"])
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        ideal = min(self.held, prompt - 1)
        self.held = prompt + completion
        return Turn(number > 0, first, prompt, cached, completion, ideal)


async def play(base_url: str, pool: str, args: argparse.Namespace) -> Phase:
    """``args.conversations`` conversations on ``pool``, ``args.at_once`` at a time."""
    phase = Phase(mode=pool.removeprefix("routing-"))
    waiting = list(range(args.conversations))

    async def line(client: httpx.AsyncClient) -> None:
        """One client line: a conversation after another, its user thinking before each turn."""
        while waiting:
            talk = Conversation(pool, waiting.pop(0), args)
            for number in range(args.turns):
                await asyncio.sleep(talk.thinking.uniform(0, args.think))
                phase.turns.append(await talk.turn(client, number))

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base_url, timeout=900) as client:
        await asyncio.gather(*(line(client) for _ in range(args.at_once)))
    phase.seconds = time.perf_counter() - started
    return phase


async def both(base_url: str, args: argparse.Namespace) -> list[Phase]:
    """The same workload on both pools at once: least-busy first in the list, then prefix."""
    return list(
        await asyncio.gather(
            play(base_url, "routing-least-busy", args), play(base_url, "routing-prefix", args)
        )
    )
