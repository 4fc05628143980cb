"""Llama 3.x calls: a JSON object ``{"name": ..., "parameters": {...}}`` that is the whole
answer, or one after ``<|python_tag|>``. (Built-in tools' ``<|python_tag|>name.call(...)``
syntax is not read: it goes out as text.)"""

from __future__ import annotations

import json
from collections.abc import Sequence

from agent.chat_format.bodies import TaggedCall
from agent.chat_format.call_format import (
    CallParser,
    GrammarRequest,
    tool_definitions,
)
from agent.chat_format.calls import CallSink
from agent.chat_format.marked import MarkedCalls
from agent.chat_format.tool_grammar import ToolGrammar, call_rules
from paddler.protocol import ChatMessage, FunctionTool, ToolCall
from paddler.template_messages import call_arguments

__all__ = ["Llama3"]

PYTHON_TAG = "<|python_tag|>"
_ARGUMENTS_KEYS = ("parameters", "arguments")
# a call that starts the answer: its opening brace is where the grammar takes over
_LEADING_CALL = r'^\s*(\{\s*"name")[\s\S]*$'


class Llama3:
    def instructions(self, tools: Sequence[FunctionTool], *, required: bool, parallel: bool) -> str:
        listed = "\n\n".join(json.dumps(tool) for tool in tool_definitions(tools))
        when = "Answer with a function call." if required else "If a function helps, call it:"
        return (
            f"You have access to these functions:\n\n{listed}\n\n{when} answer with only a "
            'JSON object {"name": <function name>, "parameters": <object of argument names '
            "and values>}, and nothing else."
        )

    def call_text(self, calls: Sequence[ToolCall]) -> str:
        return "; ".join(
            json.dumps({"name": call.name, "parameters": call_arguments(call.arguments)})
            for call in calls
        )

    def result_text(self, message: ChatMessage, name: str) -> str:
        return message.content

    def grammar(self, request: GrammarRequest) -> ToolGrammar:
        rules = call_rules(request.tools, arguments_key="parameters")
        if not request.required:
            root = f'root ::= call | "{PYTHON_TAG}" ws call'
            triggers = (_LEADING_CALL, r"<\|python_tag\|>")
            return ToolGrammar(f"{rules}\n{root}", triggers=triggers)
        return ToolGrammar(f"{rules}\n{request.root('call')}")

    def parser(self, *, max_calls: int) -> CallParser:
        def body(sink: CallSink) -> TaggedCall:
            return TaggedCall(sink, arguments_keys=_ARGUMENTS_KEYS)

        def leading(sink: CallSink) -> TaggedCall:
            return TaggedCall(sink, arguments_keys=_ARGUMENTS_KEYS, first_keys=("name", "type"))

        return MarkedCalls({PYTHON_TAG: body}, max_calls=max_calls, leading=leading)
