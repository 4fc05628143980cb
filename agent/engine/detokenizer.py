"""Turn a stream of token bytes into text without ever splitting a UTF-8 character."""

from __future__ import annotations

import codecs
from collections.abc import Iterable

from agent.engine.stop_strings import StopStrings


class Utf8Stream:
    """Incremental UTF-8 decoding of token pieces.

    A token's bytes need not be a whole character (byte-fallback tokens carry one byte of a
    multi-byte character each), so bytes are kept until they decode. Bytes that can never
    decode become U+FFFD, as does a character still unfinished when the stream ends.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        """The text completed by ``data``; may be empty while a character is unfinished."""
        return self._decoder.decode(data)

    def finish(self) -> str:
        """Whatever is left at the end of the stream."""
        return self._decoder.decode(b"", final=True)


class TextStream:
    """Token bytes in, text to release out: whole characters only, never past a stop string."""

    def __init__(self, stops: Iterable[str] = ()) -> None:
        self._utf8 = Utf8Stream()
        self._stops = StopStrings(stops)

    @property
    def stopped(self) -> bool:
        """Whether a stop string has been found (everything after it is dropped)."""
        return self._stops.stopped

    def feed(self, data: bytes) -> str:
        return self._stops.feed(self._utf8.feed(data))

    def feed_measured(self, data: bytes) -> tuple[str, int]:
        """What :meth:`feed` releases, and how many characters ``data`` finished (released
        or held back)."""
        text = self._utf8.feed(data)
        return self._stops.feed(text), len(text)

    def finish(self) -> str:
        """The text held back so far, released because the stream ended."""
        if self.stopped:
            return ""
        return self._stops.feed(self._utf8.finish()) + self._stops.finish()
