"""One inference request as the control plane tracks it, and what happens to it."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from paddler.logs import current_request_id
from paddler.protocol import Done, EmbeddingRequest, Embeddings, JobRequest, Message


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
class TextPiece:
    text: str


@dataclass(frozen=True)
class Failed:
    code: str
    message: str


JobEvent = Requeued | TextPiece | Done | Embeddings | Failed


@dataclass(eq=False)
class InferenceJob:
    pool: str
    request: JobRequest
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    request_id: str = field(default_factory=current_request_id.get)  # of the client request
    enqueued_at: float = field(default_factory=time.monotonic)
    events: asyncio.Queue[JobEvent] = field(default_factory=asyncio.Queue)
    agent: Assignee | None = None
    attempts: int = 0
    started: bool = False
    finished: bool = False
    withdrawn: bool = False

    @property
    def wants_embeddings(self) -> bool:
        """Only agents that serve embeddings may take this job."""
        return isinstance(self.request, EmbeddingRequest)

    @property
    def waiting(self) -> bool:
        return self.agent is None and not self.finished and not self.withdrawn
