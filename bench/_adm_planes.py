"""The two control planes bench/admission.py compares: pinned to a CPU, started (and timed to
their first /health), joined by a fake agent, read from /proc and asked for their usage.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench._cp_processes import python_script, rss_bytes, started
from tests.processes import AGENT_TOKEN, ControlPlane, wait_until


def pinning(pin: bool) -> set[int] | None:
    """With ``pin`` and more than one CPU: the CPU the control planes will share (the last),
    after moving this process (and so the fake agents it starts) to the others. Sharing a
    core, the two planes meet the machine's other work alike."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None
    os.sched_setaffinity(0, cpus[:-1])
    return {cpus[-1]}


def started_plane(directory: Path, cpus: set[int] | None) -> tuple[ControlPlane, float]:
    """A control plane with its state in ``directory``/state (on ``cpus``, if given), and the
    seconds from its process's start to its first 200 on /health (it reads every key before)."""
    directory.mkdir(parents=True, exist_ok=True)
    plane = ControlPlane(directory)
    mine = os.sched_getaffinity(0)
    if cpus is not None:
        os.sched_setaffinity(0, cpus)  # the plane's process inherits it
    try:
        began = time.perf_counter()
        plane.start()
        return plane, time.perf_counter() - began
    finally:
        os.sched_setaffinity(0, mine)


def start_times(
    directories: dict[str, Path], times: int, cpus: set[int] | None
) -> dict[str, list[float]]:
    """Each control plane started and stopped ``times`` times, in turns."""
    seconds: dict[str, list[float]] = {name: [] for name in directories}
    for turn in range(times):
        for name in list(directories)[:: 1 if turn % 2 else -1]:
            plane, startup = started_plane(directories[name], cpus)
            plane.stop()
            seconds[name].append(startup)
    return seconds


@contextlib.contextmanager
def plane_with_agent(
    directory: Path, cpus: set[int] | None
) -> Iterator[tuple[ControlPlane, float]]:
    """A control plane (state in ``directory``/state) and a fake agent of 64 slots; yields
    the plane and the seconds it took to answer /health (keys are read before it does)."""
    plane, startup = started_plane(directory, cpus)
    try:
        args = ["--control-plane", plane.management_url, "--token", AGENT_TOKEN, "--slots", "64"]
        log = directory / "fake-agent.log"
        with started(python_script("_cp_fake_agent.py", *args), log) as fake:

            def joined() -> bool:
                assert fake.poll() is None, log.read_text()
                return any(a["connected"] and a["state"] == "ready" for a in plane.agents())

            wait_until(joined, timeout=30, what="the fake agent")
            yield plane, startup
    finally:
        plane.stop()


def pid_of(plane: ControlPlane) -> int:
    assert plane.process is not None
    return plane.process.pid


def rss_of(open_plane: ControlPlane, keyed_plane: ControlPlane) -> dict[str, int]:
    return {"open": rss_bytes(pid_of(open_plane)), "keyed": rss_bytes(pid_of(keyed_plane))}


def usage(plane: ControlPlane, expected: int) -> dict[str, Any]:
    """GET /api/v1/usage once it counts ``expected`` requests (a sync flushes every 0.5 s),
    or after 10 s."""
    report: dict[str, Any] = {}

    def counted() -> bool:
        nonlocal report
        response = plane.management_get("/api/v1/usage")
        response.raise_for_status()
        report = response.json()
        return int(report["totals"]["requests"]) >= expected

    with contextlib.suppress(AssertionError):
        wait_until(counted, timeout=10, what="usage")
    return report
