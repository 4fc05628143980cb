"""What the control plane costs: the same engine driven directly and through Paddler.

Runs, in one process tree and one sitting, N concurrent greedy generations of the bundled
SmolLM2 model
  1. straight on the agent's engine (no network), and
  2. through a real control plane and agent (HTTP streaming → buffer → websocket → engine),
and prints aggregate tokens/s, mean time to first token, and the ratio of the two.

    .venv/bin/python bench/serving_overhead.py [--streams 4] [--tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.engine import Engine
from paddler.models import bundled_model_path
from paddler.protocol import ChatMessage, GenerationRequest, SamplingParams
from tests.processes import Agent, ControlPlane

PROMPT = "Write a long story about a lighthouse keeper."


def request(tokens: int) -> GenerationRequest:
    return GenerationRequest(
        kind="chat",
        messages=(ChatMessage(role="user", content=PROMPT),),
        sampling=SamplingParams(max_tokens=tokens, temperature=0.0),
    )


async def engine_alone(model: Path, streams: int, tokens: int) -> tuple[float, float]:
    engine = Engine(model, streams)
    await engine.load()
    await engine.generate(request(4), lambda _: None, threading.Event())  # warm-up, as below
    first_tokens: list[float] = []
    started = time.perf_counter()

    async def one() -> int:
        seen_first = False

        def on_text(_: str) -> None:
            nonlocal seen_first
            if not seen_first:
                seen_first = True
                first_tokens.append(time.perf_counter() - started)

        result = await engine.generate(request(tokens), on_text, threading.Event())
        return result.usage.completion_tokens

    produced = await asyncio.gather(*(one() for _ in range(streams)))
    elapsed = time.perf_counter() - started
    engine.close()
    return sum(produced) / elapsed, statistics.mean(first_tokens)


async def through_paddler(
    plane: ControlPlane, model: Path, streams: int, tokens: int
) -> tuple[float, float]:
    body = {
        "model": model.stem,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    first_tokens: list[float] = []
    async with httpx.AsyncClient(base_url=plane.inference_url, timeout=120) as client:
        started = time.perf_counter()

        async def one() -> int:
            first_seen = False
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if not line.startswith("data: {"):
                        continue
                    chunk = json.loads(line.removeprefix("data: "))
                    if chunk.get("usage"):
                        return int(chunk["usage"]["completion_tokens"])
                    if not first_seen and chunk["choices"][0]["delta"].get("content"):
                        first_seen = True
                        first_tokens.append(time.perf_counter() - started)
            raise RuntimeError("the stream ended without usage")

        produced = await asyncio.gather(*(one() for _ in range(streams)))
        elapsed = time.perf_counter() - started
    return sum(produced) / elapsed, statistics.mean(first_tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    model = bundled_model_path()

    direct_rate, direct_first = asyncio.run(engine_alone(model, args.streams, args.tokens))
    with tempfile.TemporaryDirectory() as directory:
        plane = ControlPlane(Path(directory), "--log-level", "warning")
        plane.start()
        agent = Agent(plane, Path(directory), "bench", model, slots=args.streams)
        agent.start()
        try:
            plane.wait_for_ready_agent("bench")
            asyncio.run(through_paddler(plane, model, 1, 4))  # warm-up
            paddler_rate, paddler_first = asyncio.run(
                through_paddler(plane, model, args.streams, args.tokens)
            )
        finally:
            agent.stop()
            plane.stop()

    print(f"{args.streams} concurrent streams x {args.tokens} tokens, SmolLM2-135M Q4_1")
    print(
        f"  engine alone     {direct_rate:7.1f} tok/s   first token {direct_first * 1000:6.0f} ms"
    )
    print(
        f"  through Paddler  {paddler_rate:7.1f} tok/s   first token {paddler_first * 1000:6.0f} ms"
    )
    print(f"  throughput ratio (Paddler / engine alone): {paddler_rate / direct_rate:.2f}")


if __name__ == "__main__":
    main()
