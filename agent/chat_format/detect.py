"""What a chat template tells about its model's output: how it writes tool calls, whether it
renders the ``tools`` it is given, and whether the model thinks (``<think>``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["CallStyle", "TemplateFormat", "detect"]

CallStyle = Literal["hermes", "llama3", "mistral", "generic"]

_USES_TOOLS = re.compile(r"\btools\b")
_LLAMA3_SIGNS = ("<|python_tag|>", "ipython", '"parameters"')


@dataclass(frozen=True)
class TemplateFormat:
    style: CallStyle = "generic"
    renders_tools: bool = False  # the template writes the ``tools`` variable into the prompt
    thinks: bool = False  # the model writes <think>...</think> before its answer
    opens_thought: bool = False  # the generation prompt itself ends with <think>


def detect(source: str, *, generation_prompt: str = "") -> TemplateFormat:
    """The format of a template's ``source``; ``generation_prompt`` is a sample render of it
    (a one-message conversation), to see whether it leaves a thought open."""
    return TemplateFormat(
        style=_style(source),
        renders_tools=bool(_USES_TOOLS.search(source)),
        thinks="<think>" in source,
        opens_thought=generation_prompt.rstrip().endswith("<think>"),
    )


def _style(source: str) -> CallStyle:
    if "<tool_call>" in source:
        return "hermes"
    if "[TOOL_CALLS]" in source:
        return "mistral"
    if "<|start_header_id|>" in source and any(sign in source for sign in _LLAMA3_SIGNS):
        return "llama3"
    return "generic"
