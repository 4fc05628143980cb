"""Scale from zero with the local provider: real control plane, real agent processes."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from control_plane.providers.local import LocalProvider, LocalSettings
from tests.autoscaler_helpers import (
    autoscaled_plane,
    client,
    management,
    scaling_actions,
    sql,
    stream_text,
)
from tests.processes import ADMIN_HEADERS, ControlPlane, wait_until
from tests.test_metrics import scrape, value

POOL = "tiny-llama"  # the stem of the tiny model's file name


@pytest.fixture
def local_instances(tmp_path: Path) -> Iterator[Path]:
    """Whatever the test's control planes launched is terminated at the end: a control plane
    that stops (not `paddler up`) leaves its agents running for the next one to adopt."""
    yield tmp_path
    directory = tmp_path / "state" / "local-instances"
    for cluster in directory.iterdir() if directory.exists() else ():
        provider = LocalProvider(LocalSettings(state_dir=tmp_path / "state", cluster=cluster.name))
        for instance in provider.list_instances():
            provider.terminate(instance.provider_id)


def instances(plane: ControlPlane) -> list[dict[str, object]]:
    data: list[dict[str, object]] = management(plane, "/api/v1/instances")["data"]
    return data


def test_a_held_request_starts_an_agent_which_is_scaled_down_when_idle(
    local_instances: Path, tiny_model_path: Path
) -> None:
    plane = autoscaled_plane(
        local_instances,
        tiny_model_path,
        *("--provider", "local", "--min-agents", "0", "--scale-down-after", "2"),
    )
    plane.start()
    try:
        assert plane.agents() == []
        assert [model.id for model in client(plane).models.list()] == [POOL]

        started = time.monotonic()
        assert stream_text(plane, POOL).strip()
        cold_start = time.monotonic() - started

        wait_until(lambda: instances(plane)[0]["first_token_at"] is not None)
        [instance] = instances(plane)
        assert instance["provider"] == "local"
        breakdown = instance["cold_start_seconds"]
        assert isinstance(breakdown, dict)
        assert 0 <= breakdown["registered"] <= breakdown["model_loaded"] <= cold_start
        assert breakdown["first_token"] is not None

        def terminated() -> bool:
            return [i["state"] for i in instances(plane)] == ["terminated"]

        wait_until(terminated, timeout=30, what=f"the idle agent terminated\n{plane.log()}")
        wait_until(lambda: plane.agents() == [] or not any(a["connected"] for a in plane.agents()))
        actions = scaling_actions(local_instances)
        assert actions[:3] == ["launch", "drain", "terminate"], actions
        [(reason, from_count, to_count)] = sql(
            local_instances,
            "SELECT reason, from_count, to_count FROM scaling_events WHERE action = 'launch'",
        )
        assert (from_count, to_count) == (0, 1)
        assert "demand 1 slots exceeds capacity 0" in reason
        events = management(plane, "/api/v1/scaling-events")["data"]
        assert [event["action"] for event in events][-3:] == ["terminate", "drain", "launch"]

        # /metrics: the cold start's phases, once each, as stored; the actions; no instance.
        samples = scrape(plane)
        for phase in ("running", "registered", "model_loaded", "first_token"):
            labels = {"pool": POOL, "phase": phase}
            assert value(samples, "paddler_cold_start_seconds_count", **labels) == 1, phase
            seconds = value(samples, "paddler_cold_start_seconds_sum", **labels)
            assert 0 <= seconds <= cold_start + 5, (phase, seconds)
            if phase != "running":
                assert seconds == pytest.approx(breakdown[phase], abs=0.01), phase
        for action in ("launch", "drain", "terminate"):
            labels = {"pool": POOL, "action": action}
            assert value(samples, "paddler_scaling_actions_total", **labels) == 1, action
        for state in ("booting", "ready", "draining"):
            assert ("paddler_instances", frozenset({"pool": POOL, "state": state}.items())) in (
                samples
            )
            assert value(samples, "paddler_instances", pool=POOL, state=state) == 0

        # The next cold start: its queued comments say how long the last one took.
        body = {"model": POOL, "messages": [{"role": "user", "content": "Hi"}], "stream": True}
        comments = []
        with httpx.stream(
            "POST", plane.inference_url + "/v1/chat/completions", json=body, timeout=60
        ) as response:
            for line in response.iter_lines():
                # keep-alives may come too, once dispatched, while the new agent prefills
                if line.startswith(": queued"):
                    comments.append(line)
        assert comments and all("queued position=1" in c for c in comments), comments
        assert any("expected_wait=" in c for c in comments), comments
    finally:
        plane.stop()


def first_live_fragment(plane: ControlPlane, path: str) -> str:
    """The HTML of the first ``fragment`` event of a dashboard stream."""
    url = plane.management_url + path
    with httpx.stream("GET", url, headers=ADMIN_HEADERS, timeout=10) as stream:
        lines = []
        for line in stream.iter_lines():
            if line.startswith("data: "):
                lines.append(line.removeprefix("data: "))
            elif not line and lines:
                return "\n".join(lines)
    raise AssertionError(f"{path} ended without an event")


def write_garbage_model(directory: Path) -> Path:
    path = directory / "garbage.gguf"
    path.write_bytes(b"GGUF" + os.urandom(4096))
    return path


@pytest.mark.parametrize("model", ["garbage", "missing"])
def test_agents_that_never_get_ready_are_replaced_then_requests_get_503(
    local_instances: Path, model: str
) -> None:
    path = (
        write_garbage_model(local_instances)
        if model == "garbage"  # loads no model: registers, never ready, times out
        else local_instances / "missing.gguf"  # the agent exits at once
    )
    plane = autoscaled_plane(
        local_instances,
        path,
        *("--provider", "local", "--boot-timeout", "3", "--max-boot-attempts", "2"),
    )
    plane.start()
    try:
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as raised:
            client(plane).chat.completions.create(
                model=path.stem, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
            )
        waited = time.monotonic() - started
        assert raised.value.status_code == 503
        assert raised.value.code == "capacity_unavailable"
        assert waited < 20, f"waited {waited:.1f}s: the buffer timeout is 60s"

        # Once failing, a new request gets its 503 at once, before any stream starts.
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as again:
            stream_text(plane, path.stem)
        assert again.value.status_code == 503
        assert time.monotonic() - started < 2

        actions = scaling_actions(local_instances)
        failure = "replace" if model == "garbage" else "boot_failed"
        assert actions.count("launch") == 2 and actions.count(failure) == 2, actions
        assert actions[-1] == "mark_failing", actions
        assert all(i["state"] == "terminated" for i in instances(plane))
        if model == "missing":  # exits by itself: a crash, so the second launch waits
            assert actions == [
                *("launch", "boot_failed", "backoff"),
                *("launch", "boot_failed", "mark_failing"),
            ]
            assert {i["reason"] for i in instances(plane)} == {"agent exited with status 2"}
        assert management(plane, "/api/v1/instances")["autoscaler"]["failing"] is True
    finally:
        plane.stop()


def test_a_control_plane_restarted_while_an_agent_boots_adopts_it(
    local_instances: Path, tiny_model_path: Path
) -> None:
    plane = autoscaled_plane(
        local_instances,
        tiny_model_path,
        *("--provider", "local", "--min-agents", "1", "--boot-timeout", "60"),
    )
    plane.start()
    try:
        wait_until(lambda: len(instances(plane)) == 1, what="the min_agents launch")
        [instance] = instances(plane)
        provider_id = str(instance["provider_id"])
        record = local_instances / "state" / "local-instances"
        [cluster] = list(record.iterdir())
        provider = LocalProvider(
            LocalSettings(state_dir=local_instances / "state", cluster=cluster.name)
        )
        pid = int(provider.list_instances()[0].details["pid"])
        os.kill(pid, signal.SIGSTOP)  # keep it booting while the control plane restarts
        plane.stop()
        assert sql(local_instances, "SELECT state FROM instances") == [("booting",)]

        plane.start()
        time.sleep(2)  # a few ticks: a duplicate launch would happen now
        # The dashboard shows the instance booting, its phases so far, and the launch.
        overview = plane.management_get("/").text
        assert f'<tr data-instance="{provider_id}">' in overview, overview
        assert '<td class="state-booting">booting</td>' in overview
        assert '<span data-phase="model_loaded">model loaded <span class="muted">' in overview
        assert "<code>launch</code> 0 → 1" in overview
        os.kill(pid, signal.SIGCONT)
        wait_until(lambda: instances(plane)[0]["state"] == "ready", what=f"ready\n{plane.log()}")
        fragment = first_live_fragment(plane, "/live/overview")  # and keeps it live
        assert '<td class="state-ready">ready</td>' in fragment, fragment
        assert '<span data-phase="model_loaded">model loaded <span' not in fragment

        assert [i["provider_id"] for i in instances(plane)] == [provider_id]
        assert [r.provider_id for r in provider.list_instances()] == [provider_id]
        assert scaling_actions(local_instances).count("launch") == 1
        samples = scrape(plane)  # the restarted control plane's own metrics
        assert value(samples, "paddler_instances", pool=POOL, state="ready") == 1
        assert value(samples, "paddler_instances", pool=POOL, state="booting") == 0
        assert value(samples, "paddler_scaling_actions_total", pool=POOL, action="launch") == 0
        phase = {"pool": POOL, "phase": "model_loaded"}
        assert value(samples, "paddler_cold_start_seconds_count", **phase) == 1
    finally:
        plane.stop()


def agent_pid(directory: Path, provider_id: str) -> int:
    record = next((directory / "state" / "local-instances").glob(f"*/{provider_id}.json"))
    pid: int = json.loads(record.read_text())["pid"]
    return pid


def test_crashed_agents_are_named_and_replaced_slower_each_time(
    local_instances: Path, tiny_model_path: Path
) -> None:
    """Agents that die by a signal (llama.cpp segfaults on some CPUs): each crash is recorded
    with the signal's name, and each replacement waits longer than the one before."""
    plane = autoscaled_plane(
        local_instances, tiny_model_path, *("--provider", "local", "--min-agents", "1")
    )
    plane.start()
    try:

        def one_ready() -> bool:
            return "ready" in [i["state"] for i in instances(plane)]

        def launches() -> int:
            return scaling_actions(local_instances).count("launch")

        def crash_the_ready_agent() -> str:
            wait_until(one_ready, what=f"an agent ready\n{plane.log()}")
            [ready] = [str(i["provider_id"]) for i in instances(plane) if i["state"] == "ready"]
            launched = launches()
            os.kill(agent_pid(local_instances, ready), signal.SIGSEGV)  # a native crash
            wait_until(lambda: launches() > launched, what=f"a replacement\n{plane.log()}")
            return ready

        crashed = [crash_the_ready_agent(), crash_the_ready_agent()]
        wait_until(one_ready, what=f"the last replacement ready\n{plane.log()}")
        assert stream_text(plane, POOL).strip()

        fates = {i["provider_id"]: i["reason"] for i in instances(plane)}
        assert [fates[provider_id] for provider_id in crashed] == ["agent exited: SIGSEGV"] * 2
        events = [
            (e["action"], e["reason"]) for e in management(plane, "/api/v1/scaling-events")["data"]
        ]
        assert [action for action, _ in reversed(events)] == [
            *("launch", "gone", "backoff"),
            *("launch", "gone", "backoff"),
            "launch",
        ]
        assert [reason for action, reason in reversed(events) if action != "launch"] == [
            f"{crashed[0]} ended on its own: agent exited: SIGSEGV",
            "next launch in 1 s after 1 crash: agent exited: SIGSEGV",
            f"{crashed[1]} ended on its own: agent exited: SIGSEGV",
            "next launch in 2 s after 2 crashes: agent exited: SIGSEGV",
        ]
        warnings = [
            line.split("paddler.autoscaler: ", 1)[1]
            for line in plane.log(tail=None).splitlines()
            if " WARNING paddler.autoscaler: " in line
        ]
        agents = {"gone": "1 -> 0", "backoff": "0 -> 0"}
        assert warnings == [
            f"pool {POOL}: {action} ({agents[action]} agents): {reason}"
            for action, reason in reversed(events)
            if action in agents
        ]

        overview = plane.management_get("/").text  # the dashboard's latest events
        assert (
            "<code>gone</code> 1 → 0: " + f"{crashed[1]} ended on its own: agent exited: SIGSEGV"
            in overview
        )
        assert "<code>backoff</code> 0 → 0: next launch in 2 s after 2 crashes" in overview

        samples = scrape(plane)
        assert value(samples, "paddler_scaling_actions_total", pool=POOL, action="backoff") == 2
        backoff_gauge = ("paddler_restart_backoff_seconds", frozenset({"pool": POOL}.items()))
        assert samples[backoff_gauge] == 0  # the replacement was launched: nothing held back
        status = management(plane, "/api/v1/instances")["autoscaler"]
        assert (status["crashes"], status["restart_backoff"], status["failing"]) == (2, None, False)
    finally:
        plane.stop()
