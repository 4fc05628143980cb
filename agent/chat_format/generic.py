"""The generic format, for templates with no tool syntax of their own: the model answers with
one JSON object, ``{"tool_call": {...}}`` (``{"tool_calls": [...]}`` when several calls may
be made) or ``{"response": "..."}``, and the grammar holds it to exactly that."""

from __future__ import annotations

import json
from collections.abc import Sequence

from agent.chat_format.call_format import (
    CallParser,
    GrammarRequest,
    tool_definitions,
)
from agent.chat_format.generic_output import GenericOutput
from agent.chat_format.tool_grammar import ToolGrammar, call_rules
from paddler.protocol import ChatMessage, FunctionTool, ToolCall
from paddler.template_messages import call_arguments

__all__ = ["Generic"]

# a JSON string, as the answer's text is written
_STRING = (
    'answer ::= "\\"" ( [^"\\\\\\x7F\\x00-\\x1F] | "\\\\" ( ["\\\\/bfnrt] '
    '| "u" [0-9a-fA-F]{4} ) )* "\\""'
)


class Generic:
    def instructions(self, tools: Sequence[FunctionTool], *, required: bool, parallel: bool) -> str:
        listed = json.dumps(tool_definitions(tools), indent=2)
        if parallel:
            call = '{"tool_calls": [{"name": "<function name>", "arguments": {<arguments>}}]}'
        else:
            call = '{"tool_call": {"name": "<function name>", "arguments": {<arguments>}}}'
        answer = "" if required else ' or, to answer directly, {"response": "<your answer>"}'
        return (
            f"You can call these functions (tools):\n{listed}\n\n"
            f"Reply with one JSON object: to call functions, {call}{answer}."
        )

    def call_text(self, calls: Sequence[ToolCall]) -> str:
        listed = [
            {"name": call.name, "arguments": call_arguments(call.arguments)} for call in calls
        ]
        if len(listed) == 1:
            return json.dumps({"tool_call": listed[0]})
        return json.dumps({"tool_calls": listed})

    def result_text(self, message: ChatMessage, name: str) -> str:
        result = {"name": name, "tool_call_id": message.tool_call_id, "content": message.content}
        return json.dumps({"tool_response": result})

    def grammar(self, request: GrammarRequest) -> ToolGrammar:
        if request.max_calls > 1:
            calls = (
                '"{" ws "\\"tool_calls\\"" ws ":" ws "[" ws call (ws "," ws call)* ws "]" ws "}"'
            )
        else:
            calls = '"{" ws "\\"tool_call\\"" ws ":" ws call ws "}"'
        rules = [call_rules(request.tools), f"calls ::= {calls}"]
        body = "calls"
        if not request.required:
            rules += [_STRING, 'response ::= "{" ws "\\"response\\"" ws ":" ws answer ws "}"']
            body = "( calls | response )"
        return ToolGrammar("\n".join([*rules, request.root(body)]))

    def parser(self, *, max_calls: int) -> CallParser:
        return GenericOutput(max_calls=max_calls)
