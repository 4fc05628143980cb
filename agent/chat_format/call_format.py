"""What every tool-call format provides: prompt text for templates that ignore ``tools``,
its grammar, and its output parser."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from agent.chat_format.calls import Piece
from agent.chat_format.tool_grammar import ToolGrammar, root_rules
from paddler.protocol import ChatMessage, FunctionTool, ToolCall

__all__ = ["CallFormat", "CallParser", "GrammarRequest", "tool_definitions"]


class CallParser(Protocol):
    @property
    def calls(self) -> int: ...

    def feed(self, text: str) -> Piece: ...

    def finish(self) -> Piece: ...


@dataclass(frozen=True)
class GrammarRequest:
    tools: tuple[FunctionTool, ...]  # the functions a call may name
    required: bool  # a call must be made, so the grammar applies from the first token
    max_calls: int
    thinks: bool = False
    opens_thought: bool = False

    def root(self, body: str) -> str:
        """The root rule of a grammar that applies from the first token."""
        return root_rules(body, thinks=self.thinks, opens_thought=self.opens_thought)


class CallFormat(Protocol):
    def instructions(self, tools: Sequence[FunctionTool], *, required: bool, parallel: bool) -> str:
        """How to call ``tools``, for the system message of a template that ignores them."""
        ...

    def call_text(self, calls: Sequence[ToolCall]) -> str:
        """An earlier assistant turn's calls written as the model writes them."""
        ...

    def result_text(self, message: ChatMessage, name: str) -> str:
        """A tool's result, for templates that have no ``tool`` role of their own."""
        ...

    def grammar(self, request: GrammarRequest) -> ToolGrammar: ...

    def parser(self, *, max_calls: int) -> CallParser: ...


def tool_definitions(tools: Sequence[FunctionTool]) -> list[dict[str, object]]:
    """``tools`` as OpenAI writes them, which is how chat templates expect them."""
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            },
        }
        for tool in tools
    ]
