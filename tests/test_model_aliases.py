"""Clients written for OpenAI's model names reach a pool through ``--model-aliases``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from control_plane.settings import ControlPlaneSettings
from paddler.settings import SettingsError
from tests.processes import Agent, ControlPlane


def test_aliases_parse_into_a_map() -> None:
    settings = ControlPlaneSettings(model_aliases=" gpt-5.5 = small , *=big ")
    assert settings.model_alias_map == {"gpt-5.5": "small", "*": "big"}


@pytest.mark.parametrize("aliases", ["gpt-5.5", "=pool", "a=", "a=x,a=y"])
def test_bad_aliases_are_refused_at_start(aliases: str) -> None:
    with pytest.raises(SettingsError, match="--model-aliases"):
        ControlPlaneSettings(model_aliases=aliases)


@pytest.fixture
def aliased_plane(tmp_path: Path, smollm2_path: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(
        tmp_path, "--model-aliases", f"gpt-5.5={smollm2_path.stem},gpt-4o=no-such-pool"
    )
    plane.start()
    agent = Agent(plane, tmp_path, "aliased", smollm2_path, slots=1)
    agent.start()
    try:
        plane.wait_for_ready_agent("aliased")
        yield plane
    finally:
        agent.stop()
        plane.stop()


def test_an_alias_is_served_by_its_pool_and_other_names_are_404(
    aliased_plane: ControlPlane,
) -> None:
    client = openai.OpenAI(base_url=aliased_plane.inference_url + "/v1", api_key="x", max_retries=0)
    answer = client.chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert answer.model == "gpt-5.5" and answer.choices[0].message.content
    for unknown in ("gpt-4o", "gpt-3.5-turbo"):  # an alias to no pool is as unknown as no alias
        with pytest.raises(openai.NotFoundError) as raised:
            client.chat.completions.create(
                model=unknown, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
            )
        assert raised.value.code == "model_not_found"
