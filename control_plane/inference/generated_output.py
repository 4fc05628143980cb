"""A generation's whole answer, put together from the agent's ``Token`` pieces."""

from __future__ import annotations

from dataclasses import dataclass, field

from paddler.protocol import Token, TokenLogprob, ToolCall


@dataclass
class _CallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class GeneratedOutput:
    """Answer text, thoughts, tool calls (their argument pieces joined) and log probabilities,
    in the order the pieces came."""

    _text: list[str] = field(default_factory=list)
    _reasoning: list[str] = field(default_factory=list)
    _calls: dict[int, _CallParts] = field(default_factory=dict)
    logprobs: list[TokenLogprob] = field(default_factory=list)

    def add(self, piece: Token) -> None:
        if piece.text:
            self._text.append(piece.text)
        if piece.reasoning:
            self._reasoning.append(piece.reasoning)
        for delta in piece.tool_calls:
            parts = self._calls.setdefault(delta.index, _CallParts())
            if delta.id:
                parts.id = delta.id
            if delta.name:
                parts.name = delta.name
            if delta.arguments:
                parts.arguments.append(delta.arguments)
        self.logprobs.extend(piece.logprobs)

    @property
    def text(self) -> str:
        return "".join(self._text)

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning)

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(id=parts.id, name=parts.name, arguments="".join(parts.arguments))
            for _, parts in sorted(self._calls.items())
        )
