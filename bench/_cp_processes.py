"""The processes bench/control_plane.py measures: started, waited for, read from /proc, stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench._errors import BenchError
from bench._servers import log_tail

BENCH = Path(__file__).resolve().parent
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class CpuMeter:
    """A process's share of one core between ``start`` and ``stop``."""

    pid: int
    _cpu: float = 0.0
    _wall: float = 0.0
    share: float = 0.0

    def start(self) -> None:
        self._cpu, self._wall = cpu_seconds(self.pid), time.perf_counter()

    def stop(self) -> float:
        wall = time.perf_counter() - self._wall
        self.share = (cpu_seconds(self.pid) - self._cpu) / wall if wall > 0 else 0.0
        return self.share


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{what} exited while starting\n{log_tail(what, log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise BenchError(f"{what} did not listen on {port} in 120 s\n{log_tail(what, log)}")


@contextlib.contextmanager
def started(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` (output to ``log``) and always stop it afterwards."""
    with log.open("ab") as output:
        process = subprocess.Popen(
            args,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def python_script(name: str, *args: str) -> list[str]:
    return [sys.executable, str(BENCH / name), *args]
