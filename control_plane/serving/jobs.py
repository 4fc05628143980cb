"""One inference request as the control plane tracks it, and what happens to it."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from control_plane.serving.mailbox import Mailbox
from paddler.logs import current_request_id
from paddler.protocol import Done, EmbeddingRequest, Embeddings, JobRequest, Message, Token


class Assignee(Protocol):
    """The agent a job was sent to, as far as the job needs it (``fleet.AgentLink`` is one)."""

    @property
    def name(self) -> str: ...

    def send(self, message: Message) -> None: ...


@dataclass(frozen=True)
class Requeued:
    """The agent vanished before the first token; the job waits again at the head of the queue."""

    agent_name: str


@dataclass(frozen=True)
class Failed:
    code: str
    message: str


@dataclass(frozen=True)
class Tick:
    """A waiting job's wake-up (see wake_ups.py): time to report, or to give up waiting."""


@dataclass(frozen=True)
class Sender:
    """Who sent a job, as far as the buffer needs it: jobs wait by priority class (a lower
    number first), then fairly across keys (by tokens, weighted), then oldest first per key."""

    key: str = ""  # the API key's name ("": the open API or a bootstrap key from settings)
    priority: int = 1  # 0 high, 1 normal, 2 low
    weight: float = 1.0
    max_buffered: int | None = None  # this key's own bound on its waiting jobs (None: none)


ANONYMOUS = Sender()


# an agent's Token frame is passed on as it came: text, reasoning, tool-call pieces, logprobs
JobEvent = Requeued | Tick | Token | Done | Embeddings | Failed


@dataclass(eq=False)
class InferenceJob:
    pool: str
    request: JobRequest
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    request_id: str = field(default_factory=current_request_id.get)  # of the client request
    sender: Sender = ANONYMOUS
    estimated_tokens: int = 1  # what the job is expected to cost: prompt estimate + answer cap
    session: str | None = None  # the client's conversation (``user`` / X-Session-Id), if named
    admitted_at: float = field(default_factory=time.monotonic)  # the client request was admitted
    queued_at: float = field(default_factory=time.monotonic)  # entered the buffer (again)
    events: Mailbox[JobEvent] = field(default_factory=Mailbox)
    agent: Assignee | None = None
    dispatched_at: float | None = None  # time.monotonic() of the latest dispatch
    attempts: int = 0
    agents_lost_in_prefill: int = 0  # agents that vanished holding it before its first token
    started: bool = False
    finished: bool = False
    withdrawn: bool = False

    @property
    def wants_embeddings(self) -> bool:
        """Only agents that serve embeddings may take this job."""
        return isinstance(self.request, EmbeddingRequest)

    @property
    def log_extra(self) -> dict[str, str]:
        """Log ``extra`` that ties a line to the client request (see paddler/logs.py)."""
        return {"request_id": self.request_id}

    @property
    def waiting(self) -> bool:
        return self.agent is None and not self.finished and not self.withdrawn


def outcome_summary(outcome: Done | Embeddings) -> str:
    """What a finished job produced, for the log."""
    if isinstance(outcome, Embeddings):
        return f"{len(outcome.vectors)} embeddings of {outcome.prompt_tokens} tokens"
    usage = outcome.usage
    return (
        f"{outcome.finish_reason}, {usage.prompt_tokens}+{usage.completion_tokens} tokens "
        f"in {outcome.seconds_total:.2f}s"
    )
