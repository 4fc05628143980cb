"""The one error model sources raise: a message fit to show an operator."""

from __future__ import annotations


class ModelSourceError(Exception):
    """The model could not be fetched. ``transient`` failures (network) are worth retrying."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
