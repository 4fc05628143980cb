"""One tool call written as a JSON object, ``{"name": "f", "arguments": {...}}``, read as it
arrives: the call starts once its name is known and its arguments stream in pieces."""

from __future__ import annotations

import json
from collections.abc import Collection
from enum import Enum, auto

from agent.chat_format.calls import CallSink
from agent.chat_format.json_scan import Step, ValueScanner

__all__ = ["CallObject"]

_WHITESPACE = " \t\n\r"


class _State(Enum):
    OPEN = auto()
    KEY_OR_END = auto()
    KEY = auto()
    COLON = auto()
    VALUE = auto()
    NAME = auto()
    ARGUMENTS = auto()
    OTHER = auto()
    NEXT = auto()
    DONE = auto()
    FAILED = auto()


class CallObject:
    """Reads one call object into ``sink``.

    ``arguments_keys``: the keys that hold the arguments (``parameters`` in Llama 3.x).
    ``first_keys``: when given, an object whose first key is not one of them is no call
    (it fails at once, so text that merely looks like JSON is not held back long).
    """

    def __init__(
        self,
        sink: CallSink,
        *,
        arguments_keys: Collection[str] = ("arguments",),
        first_keys: Collection[str] | None = None,
    ) -> None:
        self._sink = sink
        self._arguments_keys = arguments_keys
        self._first_keys = first_keys
        self._state = _State.OPEN
        self._key: list[str] = []
        self._keys_seen = 0
        self._escaped = False
        self._scanner = ValueScanner()
        self._name: str | None = None
        self._current_key = ""
        self._pending_arguments: list[str] = []  # arguments written before the name
        self.started = False  # the sink has this call
        self.raw: list[str] = []  # the text read so far

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    @property
    def failed(self) -> bool:
        return self._state is _State.FAILED

    def feed(self, text: str) -> int:
        """Read ``text``; returns how many characters belong to the object (fewer than all
        once it is done, or at the character that made it fail)."""
        arguments: list[str] = []
        consumed = len(text)
        for index, char in enumerate(text):
            if not self._push(char, arguments):
                consumed = index + (1 if self._state is _State.DONE else 0)
                break
        self.raw.append(text[:consumed])
        self._emit_arguments("".join(arguments))
        return consumed

    def _push(self, char: str, arguments: list[str]) -> bool:
        """Take one character; False when the object ended (done or failed) with it."""
        state = self._state
        if state is _State.ARGUMENTS:
            step = self._scanner.push(char)
            if step is Step.ENDED_BEFORE:
                self._state = _State.NEXT
                return self._push(char, arguments)
            arguments.append(char)
            if step is Step.ENDED:
                self._state = _State.NEXT
            return True
        if state is _State.NAME or state is _State.KEY:
            if self._escaped:
                self._escaped = False
            elif char == "\\":
                self._escaped = True
            elif char == '"':
                return self._end_string()
            self._key.append(char)
            return True
        if state is _State.OTHER:
            step = self._scanner.push(char)
            if step is Step.ENDED_BEFORE:
                self._state = _State.NEXT
                return self._push(char, arguments)
            if step is Step.ENDED:
                self._state = _State.NEXT
            return True
        if char in _WHITESPACE:
            return True
        if state is _State.OPEN:
            return self._expect(char == "{", _State.KEY_OR_END)
        if state is _State.KEY_OR_END:
            if char == "}":
                return self._close()
            return self._expect(char == '"', _State.KEY)
        if state is _State.COLON:
            return self._expect(char == ":", _State.VALUE)
        if state is _State.VALUE:
            return self._start_value(char, arguments)
        # _State.NEXT
        if char == "}":
            return self._close()
        return self._expect(char == ",", _State.KEY_OR_END)

    def _expect(self, ok: bool, then: _State) -> bool:
        self._state = then if ok else _State.FAILED
        return ok

    def _end_string(self) -> bool:
        text = _decode("".join(self._key))
        self._key = []
        if self._state is _State.NAME:
            if not text:
                return self._expect(False, _State.FAILED)
            self._name = text
            self._start_call()
            self._state = _State.NEXT
            return True
        self._keys_seen += 1
        if self._keys_seen == 1 and self._first_keys is not None and text not in self._first_keys:
            return self._expect(False, _State.FAILED)
        self._current_key = text
        self._state = _State.COLON
        return True

    def _start_value(self, char: str, arguments: list[str]) -> bool:
        key = self._current_key
        self._scanner = ValueScanner()
        if key == "name":
            return self._expect(char == '"' and self._name is None, _State.NAME)
        self._state = _State.ARGUMENTS if key in self._arguments_keys else _State.OTHER
        return self._push(char, arguments)

    def _start_call(self) -> None:
        assert self._name is not None
        self._sink.start(self._name)
        self.started = True
        self._sink.arguments("".join(self._pending_arguments))
        self._pending_arguments = []

    def _emit_arguments(self, text: str) -> None:
        if self.started:
            self._sink.arguments(text)
        elif text:
            self._pending_arguments.append(text)

    def _close(self) -> bool:
        if self._name is None:
            return self._expect(False, _State.FAILED)
        self._state = _State.DONE
        return False


def _decode(raw: str) -> str:
    try:
        value = json.loads('"' + raw + '"')
    except json.JSONDecodeError:
        return raw
    return value if isinstance(value, str) else raw
