"""What follows a tool-call marker: one call object (with its closing tag), or a JSON list of
them. Each reads text as it arrives and says how much of it was its own."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

from agent.chat_format.call_object import CallObject
from agent.chat_format.calls import CallSink

__all__ = ["Body", "BodyFactory", "CallList", "TaggedCall"]

_WHITESPACE = " \t\n\r"


class Body(Protocol):
    @property
    def done(self) -> bool: ...

    @property
    def failed(self) -> bool: ...

    @property
    def started(self) -> bool:
        """At least one call went to the sink."""
        ...

    @property
    def raw(self) -> list[str]:
        """The text read so far."""
        ...

    def feed(self, text: str) -> int:
        """Read ``text``; how many characters were the body's (all, unless it ended)."""
        ...


BodyFactory = Callable[[CallSink], Body]


class TaggedCall:
    """``{"name": ..., "arguments": ...}`` then, if ``closing`` is given, that closing tag."""

    def __init__(
        self,
        sink: CallSink,
        *,
        closing: str = "",
        arguments_keys: Collection[str] = ("arguments",),
        first_keys: Collection[str] | None = None,
    ) -> None:
        self._call = CallObject(sink, arguments_keys=arguments_keys, first_keys=first_keys)
        self._closing = closing
        self._matched = 0  # characters of the closing tag read
        self.done = False
        self.failed = False
        self.raw: list[str] = []

    @property
    def started(self) -> bool:
        return self._call.started

    def feed(self, text: str) -> int:
        consumed = 0
        if not self._call.done:
            consumed = self._call.feed(text)
            self.raw.append(text[:consumed])
            if self._call.failed:
                self.failed = True
                return consumed
            if not self._call.done:
                return consumed
            if not self._closing:
                self.done = True
                return consumed
        start = consumed
        for char in text[start:]:
            if self._matched == 0 and char in _WHITESPACE:
                consumed += 1
            elif char == self._closing[self._matched]:
                consumed += 1
                self._matched += 1
                if self._matched == len(self._closing):
                    break
            else:  # no closing tag after all: the call is over, the rest is not ours
                break
        else:
            self.raw.append(text[start:consumed])
            return consumed
        self.raw.append(text[start:consumed])
        self.done = True
        return consumed


class CallList:
    """``[call, call, ...]`` as Mistral writes it after ``[TOOL_CALLS]``."""

    def __init__(self, sink: CallSink, *, max_calls: int) -> None:
        self._sink = sink
        self._max_calls = max_calls
        self._opened = False
        self._call: CallObject | None = None
        self._expect_call = True
        self.done = False
        self.failed = False
        self.started = False
        self.raw: list[str] = []

    def feed(self, text: str) -> int:
        index = 0
        while index < len(text) and not (self.done or self.failed):
            if self._call is not None:
                used = self._call.feed(text[index:])
                index += used
                self.started = self.started or self._call.started
                if self._call.failed:
                    self.failed = True
                elif self._call.done:
                    self._call = None
                    self._expect_call = False
                continue
            char = text[index]
            if char in _WHITESPACE:
                index += 1
            elif not self._opened:
                self._opened = char == "["
                self.failed = not self._opened
                index += self._opened
            elif self._expect_call and char == "{":
                self._call = CallObject(self._sink)
            elif not self._expect_call and char == "," and self._sink.count < self._max_calls:
                self._expect_call = True
                index += 1
            elif not self._expect_call and char == "]":
                self.done = True
                index += 1
            else:
                self.failed = True
        self.raw.append(text[:index])
        return index
