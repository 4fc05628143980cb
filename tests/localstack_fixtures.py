"""A real LocalStack for the tests that talk to AWS APIs (EC2, S3).

The session fixture runs ``localstack/install.sh`` (minutes the first time), ``start.sh`` and
``seed.sh``, once per test session however many test modules import it. LocalStack not starting
is a test failure, never a skip: these tests are how the ec2 provider and the S3 model source
are known to work.

There is one LocalStack per machine (port 4566), shared by every test session on it, in any
checkout: several sessions often start together (a fresh machine's first test runs), and must
neither start two LocalStacks, nor seed one twice at once, nor stop it under each other. The
scripts serialise start, seed and stop with a machine-wide lock (``localstack/env.sh``), and
each session holds a shared lock on ``users.lock`` while it uses LocalStack. The last session
out (the one that then gets that lock exclusively) stops LocalStack if tests started it; one
started by hand is left running.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import boto3
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "localstack"
ENDPOINT = "http://127.0.0.1:4566"
REGION = "us-east-1"


@dataclass(frozen=True)
class LocalStack:
    endpoint: str
    region: str
    seeded: dict[str, str]  # seed.py's summary: launch_template, bucket, model_key, model_sha256…

    def client(self, service: str) -> Any:
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )


@dataclass
class _Use:
    """This session's use of the shared LocalStack."""

    localstack: LocalStack | None = None
    failure: str | None = None  # why setting it up failed: later modules fail at once with it
    fixtures: int = 0  # fixture instances (one per importing module) currently using it
    lease: IO[str] | None = None  # users.lock, held shared while this session uses LocalStack
    run_dir: Path | None = None


_use = _Use()


def _run(script: str, timeout: float, env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(
            ["bash", str(SCRIPTS / script)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"localstack/{script} did not finish within {timeout:.0f}s: {error.output}")
    if done.returncode != 0:
        pytest.fail(
            f"localstack/{script} failed with exit code {done.returncode}; LocalStack is "
            f"required for these tests (not skipped).\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout


def _run_dir() -> Path:
    """The machine-wide directory of the running LocalStack, as localstack/env.sh names it."""
    printed = subprocess.run(
        ["bash", "-c", 'source "$1" && printf %s "$RUN_DIR"', "env.sh", str(SCRIPTS / "env.sh")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return Path(printed)


def _set_up(use: _Use) -> LocalStack:
    use.run_dir = _run_dir()
    use.run_dir.mkdir(parents=True, exist_ok=True)
    use.lease = (use.run_dir / "users.lock").open("a")
    fcntl.flock(use.lease, fcntl.LOCK_SH)  # waits while a session that finished stops LocalStack
    _run("install.sh", timeout=1200)
    _run("start.sh", timeout=300, env={"LOCALSTACK_STARTED_BY": "tests"})
    summary = json.loads(_run("seed.sh", timeout=300).strip().splitlines()[-1])
    return LocalStack(ENDPOINT, REGION, summary)


def _leave(use: _Use) -> None:
    """Stop using LocalStack; the last session out stops it if tests started it."""
    lease, use.lease, use.localstack = use.lease, None, None
    if lease is None or use.run_dir is None:
        return
    try:
        fcntl.flock(lease, fcntl.LOCK_UN)
        try:
            fcntl.flock(lease, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another session still uses it, and stops it when it is done
        started_by = use.run_dir / "started-by"
        if started_by.is_file() and started_by.read_text().strip() == "tests":
            _run("stop.sh", timeout=120)
    finally:
        lease.close()  # releases the lock


@pytest.fixture(scope="session")
def localstack() -> Iterator[LocalStack]:
    # Test modules import this fixture, so pytest makes one per module: they share one setup.
    if _use.failure is not None:
        pytest.fail(_use.failure, pytrace=False)
    if _use.localstack is None:
        try:
            _use.localstack = _set_up(_use)
        except BaseException as error:  # pytest.fail's Failed is a BaseException
            _use.failure = str(error)
            with contextlib.suppress(pytest.fail.Exception, OSError):  # keep the first error
                _leave(_use)
            raise
    shared = _use.localstack
    _use.fixtures += 1
    try:
        yield shared
    finally:
        _use.fixtures -= 1
        if _use.fixtures == 0:
            _leave(_use)
