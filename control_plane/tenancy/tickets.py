"""An admitted request's claim on its key's limits, until it is settled with what it used."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from control_plane.serving.jobs import Sender
from control_plane.tenancy.callers import Caller

# How a request ended: answered; failed; given up by its client; turned away (buffer full).
Outcome = Literal["ok", "error", "withdrawn", "rejected"]


@dataclass(frozen=True)
class Settlement:
    prompt_tokens: int
    completion_tokens: int
    outcome: Outcome
    queue_seconds: float


@dataclass(eq=False)
class Ticket:
    """Made by ``Tenancy.admit``. ``headers`` go on the response; ``sender`` and
    ``estimated_tokens`` on the job. Settle it exactly once when the request ends (more calls
    are ignored): that frees its concurrency slot, replaces its estimate with the real tokens
    in the key's window and budgets, and records its usage."""

    caller: Caller
    model: str
    estimated_tokens: int
    minute: int  # the minute since the epoch the estimate was charged to
    headers: dict[str, str]
    _on_settle: Callable[[Ticket, Settlement], None] = field(repr=False)
    settled: bool = False

    @property
    def sender(self) -> Sender:
        return self.caller.sender()

    def settle(
        self,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        *,
        outcome: Outcome = "ok",
        queue_seconds: float = 0.0,
    ) -> None:
        if self.settled:
            return
        self.settled = True
        self._on_settle(
            self, Settlement(prompt_tokens, completion_tokens, outcome, max(0.0, queue_seconds))
        )
