"""llama-cpp-python's OpenAI server, loading its model under the agent's CPU buffer policy.

``llama_cpp.Llama`` has no option for llama.cpp's extra buffer types (AMX, repacking), so on
an AMX machine the stock server crashes where the agent does not, and elsewhere it repacks
where an agent told ``--cpu-repack off`` does not. This runs the same server with the
policy applied to every model it loads, so a comparison measures the servers, not the
buffer types:

    python bench/llama_cpp_server.py --cpu-repack auto --model … (llama_cpp.server's flags)
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import llama_cpp.llama_cpp as bindings

from agent.engine.cpu_path import CPU_REPACK_CHOICES, choose_cpu_path


def apply_policy(extra_buffers: bool) -> None:
    """Every model params struct llama-cpp-python makes from now on gets ``extra_buffers``."""
    default_params = bindings.llama_model_default_params

    def with_policy() -> Any:
        params = default_params()
        params.use_extra_bufts = extra_buffers
        return params

    bindings.llama_model_default_params = with_policy


def main() -> None:
    arguments = sys.argv[1:]
    choices = "|".join(CPU_REPACK_CHOICES)
    if (
        len(arguments) < 2
        or arguments[0] != "--cpu-repack"
        or arguments[1] not in CPU_REPACK_CHOICES
    ):
        sys.exit(f"usage: {sys.argv[0]} --cpu-repack {choices} SERVER-FLAGS…")
    path = choose_cpu_path(arguments[1])  # type: ignore[arg-type]
    apply_policy(path.extra_buffers)
    print(f"llama_cpp.server: use_extra_bufts={path.extra_buffers} ({path.summary})", flush=True)
    sys.argv = [sys.argv[0], *arguments[2:]]
    runpy.run_module("llama_cpp.server", run_name="__main__")


if __name__ == "__main__":
    main()
