"""The one exception the agent's engines raise for a job they cannot run."""

from __future__ import annotations


class EngineError(Exception):
    """A job the engine could not run; ``code`` is the protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
