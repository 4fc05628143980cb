"""Real control-plane and agent processes on loopback, for integration tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

AGENT_TOKEN = "test-agent-token"
ADMIN_TOKEN = "test-admin-token"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free now: each probe stays bound until all are chosen (two
    probes in a row may otherwise be given the same port)."""
    with contextlib.ExitStack() as probes:
        ports: list[int] = []
        for _ in range(count):
            probe = probes.enter_context(socket.socket())
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
        return ports


def wait_until(
    predicate: Callable[[], bool], *, timeout: float = 30.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class ServerProcess:
    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "paddler", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self, tail: int | None = 4000) -> str:
        text = self.log_path.read_text(errors="replace")
        return text if tail is None else text[-tail:]


class ControlPlane(ServerProcess):
    def __init__(self, directory: Path, *extra: str) -> None:
        self.inference_port, self.management_port = free_ports(2)
        super().__init__(
            [
                "control-plane",
                "--inference-addr",
                f"127.0.0.1:{self.inference_port}",
                "--management-addr",
                f"127.0.0.1:{self.management_port}",
                "--state-dir",
                str(directory / "state"),
                "--agent-token",
                AGENT_TOKEN,
                "--admin-token",
                ADMIN_TOKEN,
                *extra,
            ],
            directory / "control-plane.log",
        )

    @property
    def inference_url(self) -> str:
        return f"http://127.0.0.1:{self.inference_port}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    def start(self) -> None:
        super().start()
        wait_until(self._healthy, timeout=30, what="control plane health")

    def _healthy(self) -> bool:
        assert self.running, self.log()
        try:
            return httpx.get(self.management_url + "/health").status_code == 200
        except httpx.TransportError:
            return False

    def management_get(self, path: str, **params: Any) -> httpx.Response:
        """GET a management route with the admin token."""
        return httpx.get(self.management_url + path, headers=ADMIN_HEADERS, params=params)

    def agents(self) -> list[dict[str, Any]]:
        response = self.management_get("/api/v1/agents")
        response.raise_for_status()
        agents: list[dict[str, Any]] = response.json()["data"]
        return agents

    def pools(self) -> list[dict[str, Any]]:
        response = self.management_get("/api/v1/pools")
        response.raise_for_status()
        pools: list[dict[str, Any]] = response.json()["data"]
        return pools

    def agent(self, name: str) -> dict[str, Any] | None:
        return next((a for a in self.agents() if a["name"] == name and a["connected"]), None)

    def wait_for_ready_agent(self, name: str, timeout: float = 60.0) -> None:
        def ready() -> bool:
            agent = self.agent(name)
            return agent is not None and agent["state"] == "ready"

        wait_until(ready, timeout=timeout, what=f"agent {name} ready\n{self.log()}")


class Agent(ServerProcess):
    def __init__(
        self,
        control_plane: ControlPlane,
        directory: Path,
        name: str,
        model: Path,
        *,
        slots: int = 1,
        pool: str = "",
        token: str = AGENT_TOKEN,
        embeddings: bool = False,
        threads: int = 1,
    ) -> None:
        args = [
            "agent",
            "--control-plane",
            control_plane.management_url,
            "--model",
            str(model),
            "--slots",
            str(slots),
            "--name",
            name,
            "--context-size",
            "1024",
            # one engine thread by default: tests run several processes on two cores, and
            # llama.cpp's spinning worker threads slow to a crawl when they outnumber the cores
            "--threads",
            str(threads),
            "--reconnect-max-delay",
            "1",
        ]
        if pool:
            args += ["--pool", pool]
        if embeddings:
            args.append("--embeddings")
        super().__init__(args, directory / f"agent-{name}.log", env={"PADDLER_TOKEN": token})
        self.name = name
