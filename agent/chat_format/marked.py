"""The output parser of formats whose calls open at a marker (``<tool_call>``,
``[TOOL_CALLS]``, ``<|python_tag|>``), optionally also at a ``{`` that starts the output."""

from __future__ import annotations

from collections.abc import Mapping

from agent.chat_format.bodies import Body, BodyFactory
from agent.chat_format.calls import CallSink, Piece
from agent.chat_format.markers import find_marker, partial_marker_length

__all__ = ["MarkedCalls"]


class MarkedCalls:
    """Answer text with tool calls in it, read as it arrives.

    ``bodies`` maps each opening marker to what follows it; ``leading`` (Llama 3.x) reads a
    call that starts the output with no marker at all. Text that could still become a marker
    is held back; a call that turns out unreadable before it had a name goes out as text.
    """

    def __init__(
        self,
        bodies: Mapping[str, BodyFactory],
        *,
        max_calls: int,
        leading: BodyFactory | None = None,
    ) -> None:
        self._bodies = bodies
        self._markers = tuple(bodies)
        self._max_calls = max_calls
        self._leading = leading
        self._sink = CallSink()
        self._held = ""  # text that may be the start of a marker (or of a leading call)
        self._body: Body | None = None
        self._opening = ""  # the marker (or leading whitespace) before the current body
        self._at_start = leading is not None
        self._after_call = False  # whitespace right after a call is the format's, not text

    @property
    def calls(self) -> int:
        return self._sink.count

    def feed(self, text: str) -> Piece:
        content: list[str] = []
        self._read(self._held + text, content)
        return Piece(text="".join(content), tool_calls=self._sink.take())

    def finish(self) -> Piece:
        content = [self._held]
        self._held = ""
        if self._body is not None and not self._body.started:
            content.append(self._opening + "".join(self._body.raw))
        self._body = None
        return Piece(text="".join(content), tool_calls=self._sink.take())

    def _read(self, text: str, content: list[str]) -> None:
        self._held = ""
        while text:
            if self._after_call:
                text = text.lstrip()
                self._after_call = not text
                continue
            if self._body is not None:
                text = self._read_body(self._body, text, content)
            elif self._at_start:
                text = self._read_start(text)
            elif self._sink.count >= self._max_calls:
                content.append(text)
                return
            else:
                found = find_marker(text, self._markers)
                if found is None:
                    keep = partial_marker_length(text, self._markers)
                    content.append(text[: len(text) - keep])
                    self._held = text[len(text) - keep :]
                    return
                at, marker = found
                content.append(text[:at])
                self._opening = marker
                self._body = self._bodies[marker](self._sink)
                text = text[at + len(marker) :]

    def _read_start(self, text: str) -> str:
        assert self._leading is not None
        stripped = text.lstrip()
        if not stripped:
            self._held = text
            return ""
        self._at_start = False
        if stripped[0] == "{":
            self._opening = text[: len(text) - len(stripped)]
            self._body = self._leading(self._sink)
            return stripped
        return text

    def _read_body(self, body: Body, text: str, content: list[str]) -> str:
        used = body.feed(text)
        rest = text[used:]
        if body.failed and not body.started:
            content.append(self._opening + "".join(body.raw))
            self._body = None
        elif body.done or body.failed:
            self._body = None
            self._after_call = True
        return rest
