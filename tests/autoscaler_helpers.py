"""Helpers for the autoscaler tests: a control plane with a provider, and its SQL state."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai

from tests.processes import ControlPlane

if TYPE_CHECKING:
    from tests.localstack_fixtures import LocalStack

# Launched agents: a small context, quick reconnects, a short drain on SIGTERM.
FAST_AGENT_ARGS = "--context-size 256 --reconnect-max-delay 1 --shutdown-grace 2 --threads 1"


def autoscaled_plane(directory: Path, model: Path | str, *extra: str) -> ControlPlane:
    """A control plane whose autoscaler serves ``model``'s pool, with short timers."""
    return ControlPlane(
        directory,
        *("--agent-model", str(model), "--agent-slots", "1"),
        *("--agent-args", FAST_AGENT_ARGS, "--cluster", f"test-{uuid.uuid4().hex[:8]}"),
        *("--buffer-timeout", "60", "--queue-report-interval", "0.3"),
        *extra,
    )


def ec2_plane(localstack: LocalStack, directory: Path, model: Path, *extra: str) -> ControlPlane:
    """A control plane whose autoscaler launches into LocalStack, in a cluster of its own."""
    plane = autoscaled_plane(
        directory,
        model,
        *("--provider", "ec2", "--ec2-endpoint-url", localstack.endpoint),
        *("--ec2-region", localstack.region),
        *extra,
    )
    plane.env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": localstack.region,
    }
    return plane


def client(plane: ControlPlane) -> openai.OpenAI:
    return openai.OpenAI(base_url=plane.inference_url + "/v1", api_key="unused", max_retries=0)


def stream_text(plane: ControlPlane, model: str, max_tokens: int = 8) -> str:
    stream = client(plane).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Hello"}],
        max_tokens=max_tokens,
        stream=True,
    )
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def management(plane: ControlPlane, path: str) -> Any:
    response = plane.management_get(path)
    response.raise_for_status()
    return response.json()


def sql(plane_directory: Path, query: str) -> list[tuple[Any, ...]]:
    """Rows straight from the control plane's SQLite database."""
    with sqlite3.connect(plane_directory / "state" / "state.db") as connection:
        return connection.execute(query).fetchall()


def scaling_actions(plane_directory: Path) -> list[str]:
    return [row[0] for row in sql(plane_directory, "SELECT action FROM scaling_events ORDER BY id")]
