"""Reading JSON text as it arrives, one character at a time, without parsing it whole.

:class:`ValueScanner` tells where one JSON value ends (strings and nesting respected);
:class:`StringDecoder` turns the inside of a JSON string into its text as it comes.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["Step", "StringDecoder", "ValueScanner"]

_WHITESPACE = " \t\n\r"
_SCALAR_ENDS = ",}]" + _WHITESPACE
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class Step(Enum):
    MORE = "more"  # the character belongs to the value, which goes on
    ENDED = "ended"  # the character ended the value (a closing quote or bracket)
    ENDED_BEFORE = "ended_before"  # the value (a number, true...) ended before this character


class ValueScanner:
    """Follows one JSON value from its first character; validity is the grammar's business."""

    def __init__(self) -> None:
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._scalar = False
        self._started = False

    def push(self, char: str) -> Step:
        if not self._started:
            self._started = True
            if char in "{[":
                self._depth = 1
            elif char == '"':
                self._in_string = True
            else:
                self._scalar = True
            return Step.MORE
        if self._scalar:
            return Step.ENDED_BEFORE if char in _SCALAR_ENDS else Step.MORE
        if self._in_string:
            if self._escaped:
                self._escaped = False
            elif char == "\\":
                self._escaped = True
            elif char == '"':
                self._in_string = False
                if self._depth == 0:
                    return Step.ENDED
            return Step.MORE
        if char == '"':
            self._in_string = True
        elif char in "{[":
            self._depth += 1
        elif char in "}]":
            self._depth -= 1
            if self._depth == 0:
                return Step.ENDED
        return Step.MORE


class StringDecoder:
    """The text inside a JSON string (after its opening quote), decoded as it arrives."""

    def __init__(self) -> None:
        self.ended = False
        self._escape: str | None = None  # "\\" after a backslash, "\\uXXX" while reading hex
        self._high_surrogate: int | None = None

    def feed(self, text: str) -> tuple[str, int]:
        """The decoded text of ``text`` and how many of its characters belong to the string
        (all of them, or up to and including the closing quote)."""
        out: list[str] = []
        for index, char in enumerate(text):
            escape = self._escape
            if escape is None:
                if char == "\\":
                    self._escape = "\\"
                elif char == '"':
                    self.ended = True
                    return "".join(out), index + 1
                else:
                    out.append(char)
            elif escape == "\\":
                if char == "u":
                    self._escape = "\\u"
                else:
                    self._escape = None
                    out.append(_ESCAPES.get(char, char))
            else:
                escape += char
                if len(escape) < 6:
                    self._escape = escape
                    continue
                self._escape = None
                out.append(self._code_point(escape[2:]))
        return "".join(out), len(text)

    def _code_point(self, digits: str) -> str:
        try:
            value = int(digits, 16)
        except ValueError:
            return "\ufffd"
        if 0xD800 <= value < 0xDC00:
            self._high_surrogate = value
            return ""
        high, self._high_surrogate = self._high_surrogate, None
        if 0xDC00 <= value < 0xE000:
            if high is None:
                return "\ufffd"
            return chr(0x10000 + ((high - 0xD800) << 10) + (value - 0xDC00))
        return ("\ufffd" if high is not None else "") + chr(value)
