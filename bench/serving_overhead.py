"""What the control plane costs: the same engine driven directly and through Paddler.

Runs, in one process tree and one sitting, N concurrent greedy generations of the bundled
SmolLM2 model
  1. straight on the agent's engine (no network), and
  2. through a real control plane and agent (HTTP streaming → buffer → websocket → engine),
in R rounds, their order swapped each round, and prints each round's aggregate tokens/s, mean
time to first token and ratio of the two, then the median ratio.

    .venv/bin/python bench/serving_overhead.py [--streams 4] [--tokens 64] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.engine.cpu_path import CPU_REPACK_CHOICES, choose_cpu_path
from agent.engine.engine import Engine
from bench._servers import control_plane, paddler_agent
from bench._streams import Load, engine_load, lean_http_load
from paddler.bundled import bundled_model_path
from paddler.protocol import ChatMessage, CpuRepack, GenerationRequest, SamplingParams

PROMPT = "Write a long story about a lighthouse keeper."
PATH = "/v1/chat/completions"


def request(tokens: int) -> GenerationRequest:
    return GenerationRequest(
        kind="chat",
        messages=(ChatMessage(role="user", content=PROMPT),),
        sampling=SamplingParams(max_tokens=tokens, temperature=0.0),
    )


def body(model: Path, tokens: int) -> dict[str, object]:
    return {
        "model": model.stem,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


Pair = tuple[Load, Load]  # one round: the engine alone, then through Paddler (or the reverse)


async def alternate(
    model: Path, port: int, streams: int, tokens: int, cpu_repack: CpuRepack, repeat: int
) -> list[Pair]:
    """``repeat`` rounds of both measurements, their order swapped each round, with the engine
    and the fleet both up throughout: what else the machine runs weighs on both alike. The
    client is a bare asyncio one: the engine's is free, and httpx's CPU would be counted
    against the control plane on these shared cores."""
    engine = Engine(model, streams, cpu_repack=cpu_repack)

    async def alone() -> Load:
        return await engine_load(engine, [request(tokens)] * streams)

    async def paddler(count: int = streams, length: int = tokens) -> Load:
        bodies = [body(model, length)] * count
        return await lean_http_load("127.0.0.1", port, PATH, bodies, what="Paddler")

    try:
        await engine.load()
        await engine_load(engine, [request(4)])  # warm-ups: the first decode of each side
        await paddler(1, 4)
        rounds: list[Pair] = []
        for index in range(repeat):
            if index % 2 == 0:
                direct = await alone()
                rounds.append((direct, await paddler()))
            else:
                through = await paddler()
                rounds.append((await alone(), through))
        return rounds
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5, help="rounds of both sides (5)")
    parser.add_argument(
        "--cpu-repack",
        choices=CPU_REPACK_CHOICES,
        default="auto",
        help="the agent's CPU buffer policy, the same on both sides (auto)",
    )
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    model = bundled_model_path()
    extra = ("--cpu-repack", args.cpu_repack)
    with (
        tempfile.TemporaryDirectory() as directory,
        control_plane(Path(directory)) as plane,
        paddler_agent(plane, Path(directory), "bench", model, slots=args.streams, extra=extra),
    ):
        rounds = asyncio.run(
            alternate(
                model, plane.inference_port, args.streams, args.tokens, args.cpu_repack, args.repeat
            )
        )

    print(f"{args.streams} concurrent streams x {args.tokens} tokens, SmolLM2-135M Q4_1")
    path = choose_cpu_path(args.cpu_repack)
    print(
        f"  both sides: --cpu-repack {args.cpu_repack} -> {path.summary} "
        f"(CPU: {' '.join(path.features) or 'baseline'})"
    )
    ratios = []
    for index, (direct, paddler) in enumerate(rounds, 1):
        ratio = paddler.tokens_per_second / direct.tokens_per_second
        ratios.append(ratio)
        print(
            f"  round {index}: engine alone {direct.tokens_per_second:6.1f} tok/s "
            f"(first token {direct.mean_first_token * 1000:4.0f} ms), through Paddler "
            f"{paddler.tokens_per_second:6.1f} tok/s ({paddler.mean_first_token * 1000:4.0f} ms)"
            f": {ratio:.2f}"
        )
    print(
        f"  throughput ratio (Paddler / engine alone): median {statistics.median(ratios):.2f}"
        f" of {len(ratios)} rounds (range {min(ratios):.2f}-{max(ratios):.2f})"
    )


if __name__ == "__main__":
    main()
