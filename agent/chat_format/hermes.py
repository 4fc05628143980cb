"""Hermes 2 Pro / Qwen 2.5+ calls: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``."""

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

__all__ = ["Hermes"]

OPEN = "<tool_call>"
CLOSE = "</tool_call>"


class Hermes:
    def instructions(self, tools: Sequence[FunctionTool], *, required: bool, parallel: bool) -> str:
        listed = "\n".join(json.dumps(tool) for tool in tool_definitions(tools))
        must = "You must call one of them." if required else "Call them when they help."
        many = " You may make several calls, one block each." if parallel else ""
        return (
            f"You can call functions; their definitions are inside <tools></tools>:\n"
            f"<tools>\n{listed}\n</tools>\n{must}{many} To call a function, write its name "
            f"and arguments as JSON inside tags:\n{OPEN}\n"
            '{"name": "<function name>", "arguments": {<arguments>}}\n'
            f"{CLOSE}"
        )

    def call_text(self, calls: Sequence[ToolCall]) -> str:
        return "\n".join(
            f"{OPEN}\n"
            + json.dumps({"name": call.name, "arguments": call_arguments(call.arguments)})
            + f"\n{CLOSE}"
            for call in calls
        )

    def result_text(self, message: ChatMessage, name: str) -> str:
        return f"<tool_response>\n{message.content}\n</tool_response>"

    def grammar(self, request: GrammarRequest) -> ToolGrammar:
        block = f'block ::= "{OPEN}" ws call ws "{CLOSE}"'
        blocks = "block (ws block)*" if request.max_calls > 1 else "block"
        rules = f"{call_rules(request.tools)}\n{block}\n"
        if not request.required:
            return ToolGrammar(f"{rules}root ::= {blocks}", triggers=(OPEN,))
        return ToolGrammar(rules + request.root(blocks))

    def parser(self, *, max_calls: int) -> CallParser:
        def body(sink: CallSink) -> TaggedCall:
            return TaggedCall(sink, closing=CLOSE)

        return MarkedCalls({OPEN: body}, max_calls=max_calls)
