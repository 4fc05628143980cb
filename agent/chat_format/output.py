"""A generation's output as the agent reports it: thoughts, answer text and tool calls apart."""

from __future__ import annotations

from agent.chat_format.call_format import CallParser
from agent.chat_format.calls import Piece
from agent.chat_format.reasoning import ThoughtSplitter

__all__ = ["OutputParser"]


class OutputParser:
    """Feeds released text through the thought splitter, then the tool-call parser (each
    optional). Cheap per piece: both look only at the new text and a few held characters.

    ``reasoning_pieces`` counts the pieces fed while a thought was open: the decoder releases
    one piece per token that completes text, so this is the count of thought tokens (a token
    whose text was held back, such as half a UTF-8 character, joins the next one's piece).
    """

    def __init__(
        self, calls: CallParser | None = None, thoughts: ThoughtSplitter | None = None
    ) -> None:
        self._calls = calls
        self._thoughts = thoughts
        self.reasoning_pieces = 0

    @property
    def calls(self) -> int:
        """Tool calls started so far."""
        return 0 if self._calls is None else self._calls.calls

    def feed(self, text: str) -> Piece:
        if self._thoughts is None:
            return self._answer(text, "")
        was_thinking = self._thoughts.thinking
        reasoning, answer = self._thoughts.feed(text)
        if was_thinking or self._thoughts.thinking:
            self.reasoning_pieces += 1
        return self._answer(answer, reasoning)

    def finish(self) -> Piece:
        """What was held back, now that the output has ended."""
        reasoning = ""
        piece = Piece()
        if self._thoughts is not None:
            reasoning, answer = self._thoughts.finish()
            piece = self._answer(answer, reasoning)
        if self._calls is not None:
            last = self._calls.finish()
            piece.text += last.text
            piece.tool_calls += last.tool_calls
        return piece

    def _answer(self, text: str, reasoning: str) -> Piece:
        if self._calls is None:
            return Piece(text=text, reasoning=reasoning)
        piece = self._calls.feed(text) if text else Piece()
        piece.reasoning = reasoning
        return piece
