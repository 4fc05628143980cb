"""The ``local`` provider: agents as child processes on this host.

Each instance is one ``python -m paddler agent`` process in its own session, with its log and a
small JSON record (pid, pool, cluster, start time) in ``state_dir``. The records let a control
plane that restarted find the agents it started before (``list_instances``) and adopt or stop
them, as the ``ec2`` provider does with tags. Terminating sends SIGTERM, which makes the agent
drain, and SIGKILL after ``terminate_grace`` seconds. ``describe`` says how a child process
ended ("agent exited: SIGSEGV"); of a process started by an earlier control plane it cannot.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from control_plane.providers.base import (
    AgentSpec,
    InstanceRecord,
    InstanceState,
    InstanceStatus,
    ProviderError,
)

logger = logging.getLogger("paddler.providers.local")


@dataclass(frozen=True)
class LocalSettings:
    state_dir: Path  # instance records and agent logs
    cluster: str = "local"
    python: str = sys.executable
    terminate_grace: float = 10.0
    extra_args: tuple[str, ...] = ()  # more `paddler agent` flags, e.g. ("--context-size", "1024")
    extra_env: tuple[tuple[str, str], ...] = ()


class LocalProvider:
    name = "local"

    def __init__(self, settings: LocalSettings) -> None:
        self.settings = settings
        self.cluster = settings.cluster
        self.directory = settings.state_dir / "local-instances" / settings.cluster
        self.directory.mkdir(parents=True, exist_ok=True)
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def launch(self, spec: AgentSpec, count: int = 1) -> list[InstanceRecord]:
        if count <= 0:
            raise ValueError(f"count must be greater than 0, got {count}")
        records: list[InstanceRecord] = []
        try:
            for _ in range(count):
                records.append(self._start(spec))
        except OSError as error:
            for record in records:  # all or none
                self.terminate(record.provider_id)
            raise ProviderError(f"could not start a local agent: {error}") from error
        return records

    def terminate(self, provider_id: str) -> None:
        record = self._read(provider_id)
        if record is None:
            return
        pid = int(record["pid"])
        if self._alive(provider_id, record):
            logger.info("terminating local agent %s (pid %d)", provider_id, pid)
            self._signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + self.settings.terminate_grace
            while self._alive(provider_id, record) and time.monotonic() < deadline:
                time.sleep(0.05)
            if self._alive(provider_id, record):
                logger.warning("local agent %s ignored SIGTERM; killing it", provider_id)
                self._signal(pid, signal.SIGKILL)
                while self._alive(provider_id, record):
                    time.sleep(0.02)
        self._forget(provider_id)

    def list_instances(self, pool: str | None = None) -> list[InstanceRecord]:
        instances = []
        for path in sorted(self.directory.glob("*.json")):
            provider_id = path.stem
            record = self._read(provider_id)
            if record is None:
                continue
            if not self._alive(provider_id, record):
                self._forget(provider_id)  # it died on its own: nothing left to terminate
                continue
            if pool is None or record["pool"] == pool:
                instances.append(self._instance(provider_id, record, InstanceState.RUNNING))
        return instances

    def describe(self, provider_ids: Sequence[str]) -> dict[str, InstanceStatus]:
        return {provider_id: self._status(provider_id) for provider_id in provider_ids}

    def log_path(self, provider_id: str) -> Path:
        return self.directory / f"{provider_id}.log"

    def _start(self, spec: AgentSpec) -> InstanceRecord:
        provider_id = f"local-{secrets.token_hex(6)}"
        args = [
            self.settings.python,
            *("-m", "paddler", "agent"),
            *("--control-plane", spec.control_plane_url),
            *("--pool", spec.pool),
            *("--slots", str(spec.slots)),
            *("--name", provider_id),
            *("--instance-id", provider_id),
            *(("--model", spec.model) if spec.model else ()),
            *self.settings.extra_args,
        ]
        env = {**os.environ, **dict(self.settings.extra_env), "PADDLER_TOKEN": spec.agent_token}
        with self.log_path(provider_id).open("ab") as log:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a Ctrl-C meant for the control plane spares agents
            )
        self._children[provider_id] = process
        record: dict[str, str | int | float] = {
            "pid": process.pid,
            "start_ticks": _start_ticks(process.pid),
            "pool": spec.pool,
            "cluster": self.cluster,
            "launched_at": time.time(),
        }
        temporary = self.directory / f".{provider_id}.tmp"
        temporary.write_text(json.dumps(record))
        temporary.replace(self.directory / f"{provider_id}.json")
        logger.info(
            "started local agent %s (pid %d) for pool %s", provider_id, process.pid, spec.pool
        )
        return self._instance(provider_id, record, InstanceState.RUNNING)

    def _status(self, provider_id: str) -> InstanceStatus:
        record = self._read(provider_id)
        if record is not None and self._alive(provider_id, record):
            return InstanceStatus(InstanceState.RUNNING)
        child = self._children.get(provider_id)
        returncode = None if child is None else child.returncode
        return InstanceStatus(
            InstanceState.TERMINATED, None if returncode is None else exit_reason(returncode)
        )

    def _instance(
        self, provider_id: str, record: dict[str, str | int | float], state: InstanceState
    ) -> InstanceRecord:
        return InstanceRecord(
            provider=self.name,
            provider_id=provider_id,
            pool=str(record["pool"]),
            cluster=str(record["cluster"]),
            state=state,
            launched_at=float(record["launched_at"]),
            market="local",
            details={"pid": str(record["pid"]), "log": str(self.log_path(provider_id))},
        )

    def _read(self, provider_id: str) -> dict[str, str | int | float] | None:
        try:
            record: dict[str, str | int | float] = json.loads(
                (self.directory / f"{provider_id}.json").read_text()
            )
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return record

    def _forget(self, provider_id: str) -> None:
        self._children.pop(provider_id, None)
        (self.directory / f"{provider_id}.json").unlink(missing_ok=True)

    def _alive(self, provider_id: str, record: dict[str, str | int | float]) -> bool:
        child = self._children.get(provider_id)
        if child is not None:
            return child.poll() is None
        pid = int(record["pid"])
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is a child of ours that exited
        ticks = _start_ticks(pid)
        if ticks == -1:  # no /proc: fall back to "some process has this pid"
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            return True
        return ticks == int(record["start_ticks"])  # guards against a reused pid

    @staticmethod
    def _signal(pid: int, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def exit_reason(returncode: int) -> str:
    """How an agent process ended, from ``Popen.returncode`` (negative: killed by a signal)."""
    if returncode >= 0:
        return f"agent exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"agent exited: {name}"


def _start_ticks(pid: int) -> int:
    """The process's start time in clock ticks (Linux), 0 if it is gone, -1 without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0 if Path("/proc/self/stat").exists() else -1
    state, *fields = stat.rsplit(")", 1)[1].split()
    return 0 if state in ("Z", "X") else int(fields[18])
