"""Mistral calls: ``[TOOL_CALLS]`` and a JSON list of ``{"name": ..., "arguments": {...}}``.

(The newer ``[TOOL_CALLS]name[ARGS]{...}`` syntax is not read: it goes out as text.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from agent.chat_format.bodies import CallList
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

__all__ = ["Mistral"]

OPEN = "[TOOL_CALLS]"


class Mistral:
    def instructions(self, tools: Sequence[FunctionTool], *, required: bool, parallel: bool) -> str:
        must = "You must call one of them." if required else "Call them when they help."
        return (
            f"[AVAILABLE_TOOLS]{json.dumps(tool_definitions(tools))}[/AVAILABLE_TOOLS]\n"
            f"{must} To call functions, write {OPEN} and then a JSON list of calls: "
            '[{"name": "<function name>", "arguments": {<arguments>}}]'
        )

    def call_text(self, calls: Sequence[ToolCall]) -> str:
        listed = [
            {"name": call.name, "arguments": call_arguments(call.arguments)} for call in calls
        ]
        return OPEN + json.dumps(listed)

    def result_text(self, message: ChatMessage, name: str) -> str:
        result = {"name": name, "content": message.content}
        return f"[TOOL_RESULTS]{json.dumps(result)}[/TOOL_RESULTS]"

    def grammar(self, request: GrammarRequest) -> ToolGrammar:
        more = ' (ws "," ws call)*' if request.max_calls > 1 else ""
        body = f'"{OPEN}" ws "[" ws call{more} ws "]"'
        rules = f"{call_rules(request.tools)}\ncalls ::= {body}\n"
        if not request.required:
            return ToolGrammar(f"{rules}root ::= calls", triggers=(r"\[TOOL_CALLS\]",))
        return ToolGrammar(rules + request.root("calls"))

    def parser(self, *, max_calls: int) -> CallParser:
        def body(sink: CallSink) -> CallList:
            return CallList(sink, max_calls=max_calls)

        return MarkedCalls({OPEN: body}, max_calls=max_calls)
