"""One chat request in its template's format: what the prompt shows, which grammar holds the
output, and how the output is read back.

Policy (as llama.cpp's common chat code has it): ``required`` or a named function holds the
output to calls (of that function) from the first token; ``auto`` lets the model answer or
call, a grammar engaging at the format's call opening (the generic format, which has no
opening, holds the whole output to ``{"tool_call": ...}`` or ``{"response": ...}``);
``none`` shows no tools and parses no calls. ``parallel_tool_calls`` false: one call at most.
A request with its own grammar or response_format keeps it unless a call is required (then
the tools' grammar wins); with ``auto`` its tools are not offered, as with ``none``.
"""

from __future__ import annotations

import sys

from agent.chat_format.call_format import CallFormat, GrammarRequest
from agent.chat_format.detect import CallStyle, TemplateFormat
from agent.chat_format.generic import Generic
from agent.chat_format.hermes import Hermes
from agent.chat_format.llama3 import Llama3
from agent.chat_format.mistral import Mistral
from agent.chat_format.output import OutputParser
from agent.chat_format.prompt import PromptInputs, prompt_inputs
from agent.chat_format.reasoning import ThoughtSplitter
from agent.chat_format.tool_grammar import ToolGrammar, ToolsError
from paddler.protocol import FunctionChoice, GenerationRequest, ToolChoice

__all__ = ["output_parser", "request_prompt", "tool_grammar"]

_FORMATS: dict[CallStyle, CallFormat] = {
    "hermes": Hermes(),
    "llama3": Llama3(),
    "mistral": Mistral(),
    "generic": Generic(),
}


def request_prompt(request: GenerationRequest, template: TemplateFormat) -> PromptInputs:
    choice = _choice(request)
    return prompt_inputs(
        request.messages,
        request.tools,
        template=template,
        call_format=_FORMATS[template.style],
        offered=choice != "none",
        required=choice != "auto",
        parallel=_max_calls(request, choice) > 1,
    )


def tool_grammar(request: GenerationRequest, template: TemplateFormat) -> ToolGrammar | None:
    """The grammar the tools put on the output (None: the request's own, if any, applies)."""
    choice = _choice(request)
    if choice == "none":
        return None
    tools = request.tools
    if isinstance(choice, FunctionChoice):
        tools = tuple(tool for tool in tools if tool.name == choice.name)
        if not tools:
            raise ToolsError(
                f"tool_choice names no given function: {choice.name}", param="tool_choice"
            )
    grammar_request = GrammarRequest(
        tools=tools,
        required=choice != "auto",
        max_calls=_max_calls(request, choice),
        thinks=template.thinks,
        opens_thought=template.opens_thought,
    )
    return _FORMATS[template.style].grammar(grammar_request)


def output_parser(request: GenerationRequest, template: TemplateFormat) -> OutputParser:
    if request.kind != "chat":
        return OutputParser()
    thoughts = None
    if template.thinks and request.reasoning_format == "auto":
        thoughts = ThoughtSplitter(opened=template.opens_thought)
    choice = _choice(request)
    if choice == "none":
        return OutputParser(thoughts=thoughts)
    calls = _FORMATS[template.style].parser(max_calls=_max_calls(request, choice))
    return OutputParser(calls, thoughts)


def _choice(request: GenerationRequest) -> ToolChoice:
    if request.kind != "chat" or not request.tools:
        return "none"
    sampling = request.sampling
    own_grammar = sampling.grammar is not None or sampling.response_format is not None
    if request.tool_choice == "auto" and own_grammar:
        return "none"
    return request.tool_choice


def _max_calls(request: GenerationRequest, choice: ToolChoice) -> int:
    if isinstance(choice, FunctionChoice) or not request.parallel_tool_calls:
        return 1
    return sys.maxsize
