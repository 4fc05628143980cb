"""Two control planes sharing one PostgreSQL (as replicas will): a key made on one works on
both, its per-minute limit counts both, a revoke on one reaches the other, usage from both adds
up in the shared rows and survives a restart. Each replica has one real agent (tiny model)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.processes import ADMIN_HEADERS, Agent, ControlPlane, wait_until
from tests.sql_databases import PostgresServer
from tests.test_tenants_e2e import create_key

POOL = "tiny"
SYNC_INTERVAL = 0.2


@pytest.fixture
def replicas(
    tmp_path: Path,
    tiny_model_path: Path,
    postgres_server: PostgresServer,
) -> Iterator[list[ControlPlane]]:
    url = postgres_server.create_database()
    planes: list[ControlPlane] = []
    agents: list[Agent] = []
    for name in ("east", "west"):
        directory = tmp_path / name
        directory.mkdir()
        plane = ControlPlane(
            directory,
            "--database-url",
            url,
            "--key-sync-interval",
            str(SYNC_INTERVAL),
            # never open: a replica that has not heard of any key yet would let anyone in
            "--api-keys",
            "bootstrap-secret",
        )
        plane.start()
        planes.append(plane)
        agent = Agent(plane, directory, f"agent-{name}", tiny_model_path, pool=POOL)
        agent.start()
        agents.append(agent)
    for plane, agent in zip(planes, agents, strict=True):
        plane.wait_for_ready_agent(agent.name)
    yield planes
    for agent in agents:
        agent.stop()
    for plane in planes:
        plane.stop()


def ask(plane: ControlPlane, secret: str) -> Any:
    sdk = openai.OpenAI(base_url=plane.inference_url + "/v1", api_key=secret, max_retries=0)
    return sdk.chat.completions.create(
        model=POOL, messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )


def known_on(plane: ControlPlane, secret: str) -> bool:
    try:
        ask(plane, secret)
    except openai.AuthenticationError:
        return False
    return True


def test_a_key_made_on_one_replica_works_on_both_and_its_limit_counts_both(
    replicas: list[ControlPlane],
) -> None:
    east, west = replicas
    secret = create_key(east, "shared", requests_per_minute=4)
    ask(east, secret)
    wait_until(lambda: known_on(west, secret), timeout=10, what="west to learn the key")
    ask(east, secret)
    ask(east, secret)  # 4 admitted in all: east 3, west 1
    time.sleep(10 * SYNC_INTERVAL)  # west's sync has read east's counts many times over
    with pytest.raises(openai.RateLimitError) as raised:
        ask(west, secret)
    assert raised.value.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_a_revoke_on_one_replica_reaches_the_other(replicas: list[ControlPlane]) -> None:
    east, west = replicas
    secret = create_key(west, "leaver")
    wait_until(lambda: known_on(east, secret), timeout=10, what="east to learn the key")
    response = httpx.delete(east.management_url + "/api/v1/keys/leaver", headers=ADMIN_HEADERS)
    assert response.status_code == 200, response.text
    wait_until(lambda: not known_on(west, secret), timeout=10, what="west to refuse the key")


def usage_totals(plane: ControlPlane, key: str) -> dict[str, int]:
    response = plane.management_get("/api/v1/usage", key=key)
    assert response.status_code == 200, response.text
    totals: dict[str, int] = response.json()["totals"]
    return totals


def test_usage_from_both_replicas_adds_up_and_survives_a_restart(
    replicas: list[ControlPlane],
) -> None:
    east, west = replicas
    secret = create_key(east, "metered")
    wait_until(lambda: known_on(west, secret), timeout=10, what="west to learn the key")
    answers = [ask(plane, secret) for plane in (east, west, west, east, west)]
    requests = len(answers) + 1  # and the one that found west knew the key
    completion_tokens: int = sum(answer.usage.completion_tokens for answer in answers)

    def counted() -> bool:
        return usage_totals(east, "metered")["requests"] == requests

    wait_until(
        counted,
        timeout=10,
        what=f"both replicas' usage in the shared rows: {usage_totals(east, 'metered')}",
    )
    totals = usage_totals(west, "metered")
    assert totals["completion_tokens"] >= completion_tokens
    for plane in replicas:
        plane.stop()
    east.start()
    assert usage_totals(east, "metered") == totals
    assert [key["name"] for key in east.management_get("/api/v1/keys").json()["data"]] == [
        "metered"
    ]
