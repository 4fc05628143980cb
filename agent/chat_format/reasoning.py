"""Thoughts apart from the answer: ``<think>...</think>`` at the start of a model's output."""

from __future__ import annotations

from agent.chat_format.markers import partial_marker_length

__all__ = ["ThoughtSplitter"]

OPEN = "<think>"
CLOSE = "</think>"


class ThoughtSplitter:
    """Splits streamed output into (reasoning, answer) text.

    A thought opens only where the output starts (after whitespace), or is already open when
    the template's generation prompt ended with ``<think>``. The answer's leading whitespace
    after ``</think>`` is dropped. Only text that could be a partial tag is held back.
    """

    def __init__(self, *, opened: bool = False) -> None:
        self.thinking = opened
        self._at_start = not opened  # before any answer text: a thought may still open
        self._after_close = False  # just after </think>: leading whitespace is dropped
        self._held = ""

    def feed(self, text: str) -> tuple[str, str]:
        text, self._held = self._held + text, ""
        if self._at_start:
            stripped = text.lstrip()
            if OPEN.startswith(stripped):
                self._held = text
                return "", ""
            self._at_start = False
            if stripped.startswith(OPEN):
                self.thinking = True
                text = stripped[len(OPEN) :]
        if not self.thinking:
            return "", self._answer(text)
        at = text.find(CLOSE)
        if at < 0:
            keep = partial_marker_length(text, (CLOSE,))
            self._held = text[len(text) - keep :]
            return text[: len(text) - keep], ""
        self.thinking = False
        self._after_close = True
        return text[:at], self._answer(text[at + len(CLOSE) :])

    def finish(self) -> tuple[str, str]:
        held, self._held = self._held, ""
        if self.thinking:
            return held, ""
        return "", held

    def _answer(self, text: str) -> str:
        if self._after_close:
            text = text.lstrip()
            self._after_close = not text
        return text
