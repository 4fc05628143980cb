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
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.engine.cpu_path import CPU_REPACK_CHOICES, choose_cpu_path
from agent.engine.engine import Engine
from bench._servers import control_plane, paddler_agent
from bench._streams import Load, engine_load, http_load
from paddler.bundled import bundled_model_path
from paddler.protocol import ChatMessage, CpuRepack, GenerationRequest, SamplingParams

PROMPT = "Write a long story about a lighthouse keeper."


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


async def engine_alone(model: Path, streams: int, tokens: int, cpu_repack: CpuRepack) -> Load:
    engine = Engine(model, streams, cpu_repack=cpu_repack)
    try:
        await engine.load()
        await engine_load(engine, [request(4)])  # warm-up, as below
        return await engine_load(engine, [request(tokens)] * streams)
    finally:
        engine.close()


def through_paddler(model: Path, streams: int, tokens: int, cpu_repack: CpuRepack) -> Load:
    extra = ("--cpu-repack", cpu_repack)
    with (
        tempfile.TemporaryDirectory() as directory,
        control_plane(Path(directory)) as plane,
        paddler_agent(plane, Path(directory), "bench", model, slots=streams, extra=extra),
    ):

        def load(bodies: list[dict[str, object]]) -> Load:
            url, path = plane.inference_url, "/v1/chat/completions"
            return asyncio.run(http_load(url, path, bodies, what="the control plane"))

        load([body(model, 4)])  # warm-up, as above
        return load([body(model, tokens)] * streams)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument(
        "--cpu-repack",
        choices=CPU_REPACK_CHOICES,
        default="auto",
        help="the agent's CPU buffer policy, the same on both sides (auto)",
    )
    args = parser.parse_args()
    model = bundled_model_path()

    direct = asyncio.run(engine_alone(model, args.streams, args.tokens, args.cpu_repack))
    paddler = through_paddler(model, args.streams, args.tokens, args.cpu_repack)

    print(f"{args.streams} concurrent streams x {args.tokens} tokens, SmolLM2-135M Q4_1")
    path = choose_cpu_path(args.cpu_repack)
    print(
        f"  both sides: --cpu-repack {args.cpu_repack} -> {path.summary} "
        f"(CPU: {' '.join(path.features) or 'baseline'})"
    )
    for label, load in (("engine alone   ", direct), ("through Paddler", paddler)):
        print(
            f"  {label}  {load.tokens_per_second:7.1f} tok/s"
            f"   first token {load.mean_first_token * 1000:6.0f} ms"
        )
    ratio = paddler.tokens_per_second / direct.tokens_per_second
    print(f"  throughput ratio (Paddler / engine alone): {ratio:.2f}")


if __name__ == "__main__":
    main()
