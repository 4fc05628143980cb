"""Finding a format's opening markers in streamed text, holding back only what could be one."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["find_marker", "partial_marker_length"]


def find_marker(text: str, markers: Sequence[str]) -> tuple[int, str] | None:
    """The earliest whole marker in ``text``: its position and which one."""
    found: tuple[int, str] | None = None
    for marker in markers:
        at = text.find(marker)
        if at >= 0 and (found is None or at < found[0]):
            found = (at, marker)
    return found


def partial_marker_length(text: str, markers: Sequence[str]) -> int:
    """The length of the longest end of ``text`` that a marker starts with (to hold back)."""
    longest = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(text)), longest, -1):
            if text.endswith(marker[:size]):
                longest = size
                break
    return longest
