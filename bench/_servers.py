"""The servers a benchmark starts: any command, a control plane and real agents; each stopped
afterwards, and a start that fails reported with the end of its log."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from bench._errors import BenchError
from tests.processes import Agent, ControlPlane, ServerProcess, wait_until

CORES = os.cpu_count() or 1  # every server computes with all of them


class CommandServer(ServerProcess):
    """Any server command (``ServerProcess`` runs ``python -m paddler``), logging to a file."""

    def __init__(self, name: str, args: list[str], log_path: Path, ready_url: str) -> None:
        super().__init__(args, log_path)
        self.name = name
        self.ready_url = ready_url

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def wait_ready(self, timeout: float = 120.0) -> None:
        def ready() -> bool:
            if not self.running:
                return True
            try:
                return httpx.get(self.ready_url, timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        with contextlib.suppress(AssertionError):  # timed out: said below, with the log
            wait_until(ready, timeout=timeout, what=f"{self.name} at {self.ready_url}")
        if not self.running:
            raise start_failure(self.name, "exited while starting", self.log_path)
        if not ready():
            raise start_failure(
                self.name, f"did not answer {self.ready_url} in {timeout:.0f} s", self.log_path
            )


def log_tail(name: str, path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"(no log from {name} at {path})"
    return f"--- last lines of {name}'s log ({path}) ---\n" + "\n".join(text)


def start_failure(name: str, what_happened: str, path: Path) -> BenchError:
    """A server did not start: its log's last line on the first line, then the log's tail."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    last = f": {lines[-1].strip()}" if lines else ""
    return BenchError(f"{name} {what_happened}{last}\n{log_tail(name, path)}")


@contextlib.contextmanager
def running(server: CommandServer, timeout: float = 120.0) -> Iterator[CommandServer]:
    """Start ``server``, wait until it answers, and always stop it afterwards."""
    try:
        server.start()
        server.wait_ready(timeout)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def control_plane(directory: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(directory, "--log-level", "warning")
    try:
        try:
            plane.start()
        except AssertionError:
            raise start_failure("the control plane", "did not start", plane.log_path) from None
        yield plane
    finally:
        plane.stop()


@contextlib.contextmanager
def paddler_agent(
    plane: ControlPlane,
    directory: Path,
    name: str,
    model: Path,
    *,
    slots: int,
    extra: Sequence[str] = (),
) -> Iterator[Agent]:
    """A real agent using every core (``extra``: more agent flags), ready in ``plane``."""
    agent_process = Agent(plane, directory, name, model, slots=slots, threads=CORES)
    agent_process.args += list(extra)  # argparse: the last of a repeated flag wins
    try:
        agent_process.start()

        def settled() -> bool:
            found = plane.agent(name)
            return not agent_process.running or (found is not None and found["state"] == "ready")

        with contextlib.suppress(AssertionError):  # timed out: said below, with the log
            wait_until(settled, timeout=120, what=f"agent {name} ready")
        found = plane.agent(name)
        if not agent_process.running or found is None or found["state"] != "ready":
            status = "exited" if not agent_process.running else "did not become ready in 120 s"
            raise start_failure(f"agent {name}", status, agent_process.log_path)
        yield agent_process
    finally:
        agent_process.stop()
