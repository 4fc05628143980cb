"""A pool's desired scaling bounds drive the autoscaler (local provider, real processes)."""

from __future__ import annotations

from pathlib import Path

import httpx

from control_plane.providers.local import LocalProvider, LocalSettings
from tests.autoscaler_helpers import autoscaled_plane, management
from tests.processes import ADMIN_HEADERS, wait_until

POOL = "tiny-llama"  # the stem of the tiny model's file name


def _terminate_local_instances(directory: Path) -> None:
    clusters = directory / "state" / "local-instances"
    for cluster in clusters.iterdir() if clusters.exists() else ():
        provider = LocalProvider(LocalSettings(state_dir=directory / "state", cluster=cluster.name))
        for instance in provider.list_instances():
            provider.terminate(instance.provider_id)


def test_the_desired_state_tells_the_autoscaler_what_to_start_and_how_many(
    tmp_path: Path, tiny_model_path: Path, smollm2_path: Path
) -> None:
    plane = autoscaled_plane(
        tmp_path, tiny_model_path, *("--provider", "local", "--min-agents", "0")
    )
    plane.start()
    try:
        assert management(plane, "/api/v1/instances")["autoscaler"]["min_agents"] == 0
        response = httpx.put(
            f"{plane.management_url}/api/v1/pools/{POOL}/desired-state",
            headers=ADMIN_HEADERS,
            json={
                "model_source": str(smollm2_path),
                "slots": 1,
                "scaling": {"min_agents": 1, "max_agents": 2},
            },
        )
        assert response.status_code == 200, response.text
        status = management(plane, "/api/v1/instances")["autoscaler"]
        assert (status["min_agents"], status["max_agents"]) == (1, 2)

        def one_agent_on_v1() -> bool:
            agents = management(plane, f"/api/v1/pools/{POOL}")["agents"]
            return [(a["state"], a["model"], a["applied_version"]) for a in agents] == [
                ("ready", smollm2_path.stem, 1)
            ]

        # no request asked for it: min_agents alone launched it, with the desired model (an
        # agent that joins with another model is logged, and swapped)
        wait_until(one_agent_on_v1, timeout=90, what=f"an agent on v1\n{plane.log()}")
        assert "the pool's model is" not in plane.log(None)
    finally:
        plane.stop()
        _terminate_local_instances(tmp_path)
