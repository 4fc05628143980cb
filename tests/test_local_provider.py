"""The local provider: real agent processes joining a real control plane."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane.providers.base import AgentSpec, InstanceState, InstanceStatus, Provider
from control_plane.providers.local import LocalProvider, LocalSettings, exit_reason
from tests.processes import AGENT_TOKEN, ControlPlane, wait_until

FAST_AGENT = ("--context-size", "256", "--reconnect-max-delay", "1", "--shutdown-grace", "2")


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[LocalProvider]:
    local = LocalProvider(LocalSettings(state_dir=tmp_path, extra_args=FAST_AGENT))
    yield local
    for instance in local.list_instances():
        local.terminate(instance.provider_id)


def spec(control_plane: ControlPlane, model: Path) -> AgentSpec:
    return AgentSpec(
        pool="tiny",
        control_plane_url=control_plane.management_url,
        agent_token=AGENT_TOKEN,
        model=str(model),
        slots=1,
    )


def test_launched_agents_join_with_their_instance_id_and_leave_when_terminated(
    control_plane: ControlPlane, provider: LocalProvider, tiny_model_path: Path, tmp_path: Path
) -> None:
    assert isinstance(provider, Provider)
    records = provider.launch(spec(control_plane, tiny_model_path), count=2)

    ids = sorted(record.provider_id for record in records)
    assert {record.pool for record in records} == {"tiny"}

    def joined() -> bool:
        agents = [a for a in control_plane.agents() if a["connected"] and a["state"] == "ready"]
        return sorted(a["instance_id"] for a in agents) == ids

    wait_until(joined, timeout=60, what=f"agents {ids} ready\n{control_plane.log()}")
    assert {a["pool"] for a in control_plane.agents()} == {"tiny"}
    assert sorted(r.provider_id for r in provider.list_instances()) == ids
    assert provider.list_instances(pool="other") == []

    # A control plane that restarted finds the agents it started, by their records.
    restarted = LocalProvider(LocalSettings(state_dir=tmp_path))
    assert sorted(r.provider_id for r in restarted.list_instances()) == ids
    assert set(restarted.describe(ids).values()) == {InstanceStatus(InstanceState.RUNNING)}

    gone, kept = ids
    restarted.terminate(gone)
    restarted.terminate(gone)  # again: not an error
    assert provider.describe([gone, kept, "local-unknown"]) == {
        gone: InstanceStatus(InstanceState.TERMINATED),  # terminated when asked: no crash
        kept: InstanceStatus(InstanceState.RUNNING),
        "local-unknown": InstanceStatus(InstanceState.TERMINATED),
    }
    wait_until(
        lambda: [a["instance_id"] for a in control_plane.agents() if a["connected"]] == [kept],
        timeout=15,
        what="the terminated agent to leave",
    )
    assert "shut down" in provider.log_path(gone).read_text()  # SIGTERM: a clean exit
    provider.terminate(kept)
    assert provider.list_instances() == []


def test_an_agent_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    stubborn = tmp_path / "stubborn-python"
    stubborn.write_text(
        "#!/usr/bin/env python3\n"
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ignoring SIGTERM', flush=True)\n"
        "time.sleep(120)\n"
    )
    stubborn.chmod(0o755)
    provider = LocalProvider(
        LocalSettings(state_dir=tmp_path, python=str(stubborn), terminate_grace=0.5)
    )
    [record] = provider.launch(AgentSpec("tiny", "http://127.0.0.1:9", "t"))
    wait_until(lambda: "ignoring" in provider.log_path(record.provider_id).read_text())

    started = time.monotonic()
    provider.terminate(record.provider_id)

    assert 0.5 <= time.monotonic() - started < 5
    assert provider.describe([record.provider_id])[record.provider_id].state == (
        InstanceState.TERMINATED
    )
    with pytest.raises(ProcessLookupError):
        os.kill(int(record.details["pid"]), 0)


def test_an_agent_that_exits_on_its_own_is_no_longer_listed(
    provider: LocalProvider, control_plane: ControlPlane, tmp_path: Path
) -> None:
    [record] = provider.launch(spec(control_plane, tmp_path / "missing.gguf"))

    wait_until(
        lambda: (
            provider.describe([record.provider_id])[record.provider_id].state
            == InstanceState.TERMINATED
        ),
        timeout=30,
        what="the agent to exit",
    )
    assert provider.describe([record.provider_id]) == {
        record.provider_id: InstanceStatus(InstanceState.TERMINATED, "agent exited with status 2")
    }
    assert provider.list_instances() == []
    assert "model file not found" in provider.log_path(record.provider_id).read_text()


def test_a_record_whose_pid_was_reused_is_not_adopted(tmp_path: Path) -> None:
    provider = LocalProvider(LocalSettings(state_dir=tmp_path))
    record = {
        "pid": os.getpid(),  # alive, but not the process that was started
        "start_ticks": 1,
        "pool": "tiny",
        "cluster": "local",
        "launched_at": time.time() - 60,
    }
    (provider.directory / "local-stale.json").write_text(json.dumps(record))

    assert provider.list_instances() == []
    assert not (provider.directory / "local-stale.json").exists()


def test_an_agent_killed_by_a_signal_is_described_by_the_signal_name(
    control_plane: ControlPlane, provider: LocalProvider, tiny_model_path: Path, tmp_path: Path
) -> None:
    [record] = provider.launch(spec(control_plane, tiny_model_path))
    wait_until(
        lambda: any(a["state"] == "ready" for a in control_plane.agents()),
        timeout=60,
        what=f"the agent ready\n{control_plane.log()}",
    )

    os.kill(int(record.details["pid"]), signal.SIGSEGV)  # what a native crash looks like

    crashed = InstanceStatus(InstanceState.TERMINATED, "agent exited: SIGSEGV")
    wait_until(lambda: provider.describe([record.provider_id])[record.provider_id] == crashed)
    # A control plane that restarted did not start the process: it cannot say how it ended.
    restarted = LocalProvider(LocalSettings(state_dir=tmp_path))
    assert restarted.describe([record.provider_id]) == {
        record.provider_id: InstanceStatus(InstanceState.TERMINATED)
    }


@pytest.mark.parametrize(
    ("returncode", "reason"),
    [
        (-signal.SIGSEGV, "agent exited: SIGSEGV"),
        (-signal.SIGKILL, "agent exited: SIGKILL"),
        (3, "agent exited with status 3"),
        (0, "agent exited with status 0"),
        (-99, "agent exited: signal 99"),
    ],
)
def test_exit_reasons(returncode: int, reason: str) -> None:
    assert exit_reason(returncode) == reason
