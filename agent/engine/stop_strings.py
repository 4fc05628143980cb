"""Find stop strings in streamed text, which may span any number of pieces."""

from __future__ import annotations

from collections.abc import Iterable


class StopStrings:
    """Filters streamed text so that nothing from a stop string onwards is ever released.

    Text that could be the start of a stop string is held back until the following text
    shows whether it is one. The stop string itself is never released.
    """

    def __init__(self, stops: Iterable[str]) -> None:
        self._stops = tuple(dict.fromkeys(stop for stop in stops if stop))
        self._longest = max((len(stop) for stop in self._stops), default=0)
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """The part of ``text`` (plus any held text) that is safe to release.

        Once a stop string is found, :attr:`stopped` is true and all later text is dropped.
        """
        if self.stopped:
            return ""
        if not self._stops:
            return text
        text = self._held + text
        found = [index for stop in self._stops if (index := text.find(stop)) >= 0]
        if found:
            self.stopped = True
            self._held = ""
            return text[: min(found)]
        keep = self._partial_match_length(text)
        self._held = text[len(text) - keep :]
        return text[: len(text) - keep]

    def finish(self) -> str:
        """Release the held text: the stream ended without completing a stop string."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _partial_match_length(self, text: str) -> int:
        """Length of the longest end of ``text`` that some stop string starts with."""
        for length in range(min(len(text), self._longest - 1), 0, -1):
            tail = text[-length:]
            if any(stop.startswith(tail) for stop in self._stops):
                return length
        return 0
