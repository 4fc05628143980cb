"""Reading the generic format's output: one JSON object that is either an answer,
``{"response": "..."}``, or calls, ``{"tool_call": {...}}`` / ``{"tool_calls": [...]}``.

The answer's text streams out decoded as the string arrives; anything that is not such an
object goes out as text, as written.
"""

from __future__ import annotations

import re

from agent.chat_format.bodies import Body, CallList, TaggedCall
from agent.chat_format.calls import CallSink, Piece
from agent.chat_format.json_scan import StringDecoder

__all__ = ["GenericOutput"]

# the object's opening up to its first value: held back until the key is known
_OPENING = re.compile(r'\s*\{\s*"(response|tool_calls?)"\s*:\s*')
_OPENING_PREFIX = re.compile(r'\s*(\{\s*("[a-z_]*("\s*(:\s*)?)?)?)?$')
_KEYS = ("response", "tool_call", "tool_calls")


class GenericOutput:
    def __init__(self, *, max_calls: int) -> None:
        self._max_calls = max_calls
        self._sink = CallSink()
        self._opening = ""  # text read while the opening was unsure
        self._key: str | None = None
        self._answer: StringDecoder | None = None
        self._body: Body | None = None
        self._plain = False  # not the format after all: everything is text
        self._closed = False  # the value ended: only the closing brace may follow

    @property
    def calls(self) -> int:
        return self._sink.count

    def feed(self, text: str) -> Piece:
        content = self._read(text)
        return Piece(text=content, tool_calls=self._sink.take())

    def finish(self) -> Piece:
        content = ""
        unsure = self._key is None or (self._key == "response" and self._answer is None)
        if unsure or (self._body is not None and not self._body.started):
            content = self._opening + ("".join(self._body.raw) if self._body else "")
        self._opening = ""
        self._body = None
        return Piece(text=content, tool_calls=self._sink.take())

    def _read(self, text: str) -> str:
        if self._plain:
            return text
        if self._key is None:
            return self._read_opening(text)
        if self._key == "response" and self._answer is None:
            return self._open_answer(text)
        if self._answer is not None and not self._answer.ended:
            decoded, used = self._answer.feed(text)
            return decoded + (self._read_tail(text[used:]) if self._answer.ended else "")
        body = self._body
        if body is not None and not (body.done or body.failed):
            used = body.feed(text)
            if body.failed and not body.started:
                return self._give_up(self._opening + "".join(body.raw) + text[used:])
            return self._read_tail(text[used:]) if body.done or body.failed else ""
        return self._read_tail(text)

    def _open_answer(self, text: str) -> str:
        stripped = text.lstrip()
        self._opening += text[: len(text) - len(stripped)]
        if not stripped:
            return ""
        if stripped[0] != '"':
            return self._give_up(self._opening + stripped)
        self._answer = StringDecoder()
        return self._read(stripped[1:])

    def _read_opening(self, text: str) -> str:
        held = self._opening + text
        found = _OPENING.match(held)
        if found is None:
            if _OPENING_PREFIX.match(held):
                self._opening = held
                return ""
            return self._give_up(held)
        self._key = found.group(1)
        self._opening = held[: found.end()]
        rest = held[found.end() :]
        if self._key == "response":
            return self._open_answer(rest)
        if self._key == "tool_call":
            self._body = TaggedCall(self._sink)
        else:
            self._body = CallList(self._sink, max_calls=self._max_calls)
        return self._read(rest)

    def _read_tail(self, text: str) -> str:
        """After the value: the closing brace is the format's; other text is text (bar the
        whitespace a grammar may leave after the object)."""
        if not self._closed:
            stripped = text.lstrip()
            if not stripped:
                return ""
            self._closed = True
            text = stripped[1:] if stripped[0] == "}" else stripped
        return text if text.strip() else ""

    def _give_up(self, text: str) -> str:
        self._plain = True
        self._opening = ""
        self._body = None
        return text
