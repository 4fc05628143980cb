"""The one error a benchmark reports instead of a figure."""

from __future__ import annotations


class BenchError(Exception):
    """A backend could not be measured (it did not start, or it answered with an error)."""
