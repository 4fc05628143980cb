"""An agent serving SmolLM2 (or another model) with a chat template of the tests' fixtures
instead of the model's own, and an openai client for it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openai

from tests.processes import Agent, ControlPlane

FIXTURES = Path(__file__).parent / "fixtures"


@contextmanager
def client_of_agent(
    control_plane: ControlPlane,
    directory: Path,
    model: Path,
    name: str,
    chat_template: Path | None = None,
) -> Iterator[openai.OpenAI]:
    """A ready agent ``name`` (its ``--chat-template`` when given) for the client's lifetime."""
    agent = Agent(control_plane, directory, name, model)
    if chat_template is not None:
        agent.args += ["--chat-template", str(chat_template)]
    agent.start()
    try:
        control_plane.wait_for_ready_agent(name)
        yield openai.OpenAI(
            base_url=control_plane.inference_url + "/v1", api_key="x", max_retries=0
        )
    finally:
        agent.stop()
