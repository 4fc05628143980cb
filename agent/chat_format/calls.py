"""Tool calls as a parser finds them: ids, indices, and the pieces the agent sends."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field

from paddler.protocol import ToolCallDelta

__all__ = ["CallSink", "Piece", "new_call_id"]

_ID_ALPHABET = string.ascii_letters + string.digits
_ID_LENGTH = 24


def new_call_id() -> str:
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))


@dataclass
class Piece:
    """What one stretch of model output was: answer text, thoughts and tool-call pieces."""

    text: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCallDelta] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.text or self.reasoning or self.tool_calls)


class CallSink:
    """Collects the deltas of the calls a parser reads; numbers the calls from 0."""

    def __init__(self) -> None:
        self.count = 0  # calls started so far
        self._deltas: list[ToolCallDelta] = []

    def start(self, name: str) -> None:
        self._deltas.append(ToolCallDelta(index=self.count, id=new_call_id(), name=name))
        self.count += 1

    def arguments(self, text: str) -> None:
        if not text:
            return
        index = self.count - 1
        last = self._deltas[-1] if self._deltas else None
        if last is not None and last.index == index:
            self._deltas[-1] = last.model_copy(update={"arguments": last.arguments + text})
        else:
            self._deltas.append(ToolCallDelta(index=index, arguments=text))

    def take(self) -> list[ToolCallDelta]:
        deltas, self._deltas = self._deltas, []
        return deltas
