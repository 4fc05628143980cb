"""A real LocalStack for the tests that talk to AWS APIs (EC2, S3).

The session fixture runs ``localstack/install.sh`` (minutes the first time), ``start.sh`` and
``seed.sh``. LocalStack not starting is a test failure, never a skip: these tests are how the
ec2 provider and the S3 model source are known to work. A LocalStack that this fixture started
is stopped at the end of the session; one that was already running is left running.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
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


def _run(script: str, timeout: float) -> str:
    try:
        done = subprocess.run(
            ["bash", str(SCRIPTS / script)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"localstack/{script} did not finish within {timeout:.0f}s: {error.output}")
    if done.returncode != 0:
        pytest.fail(
            f"localstack/{script} failed with exit code {done.returncode}; LocalStack is "
            f"required for these tests (not skipped).\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout


def _healthy() -> bool:
    try:
        return httpx.get(f"{ENDPOINT}/_localstack/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="session")
def localstack() -> Iterator[LocalStack]:
    already_running = _healthy()
    _run("install.sh", timeout=1200)
    _run("start.sh", timeout=300)
    summary = json.loads(_run("seed.sh", timeout=300).strip().splitlines()[-1])
    try:
        yield LocalStack(ENDPOINT, REGION, summary)
    finally:
        if not already_running:
            _run("stop.sh", timeout=60)
