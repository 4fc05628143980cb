"""Fixtures that start a control plane and agents as real processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.processes import Agent, ControlPlane

StartAgent = Callable[..., Agent]


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path, "--buffer-timeout", "20", "--queue-report-interval", "0.5")
    plane.start()
    yield plane
    plane.stop()


@pytest.fixture
def start_agent(
    control_plane: ControlPlane, tmp_path: Path, smollm2_path: Path
) -> Iterator[StartAgent]:
    started: list[Agent] = []

    def start(
        name: str,
        *,
        slots: int = 1,
        model: Path = smollm2_path,
        wait: bool = True,
        embeddings: bool = False,
    ) -> Agent:
        agent = Agent(control_plane, tmp_path, name, model, slots=slots, embeddings=embeddings)
        agent.env["PADDLER_MODEL_CACHE"] = str(tmp_path / "model-cache")  # for swaps to URLs
        agent.start()
        started.append(agent)
        if wait:
            control_plane.wait_for_ready_agent(name)
        return agent

    yield start
    for agent in started:
        agent.stop()
