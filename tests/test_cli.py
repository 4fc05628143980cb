"""The ``paddler`` command as users run it: real processes, real files."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from control_plane.db.migrate import head
from tests.processes import free_ports


def paddler(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paddler", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def read_until(process: subprocess.Popen[bytes], marker: str, timeout: float) -> str:
    """Collect the process's stdout until ``marker`` appears (unbuffered, so nothing hides)."""
    assert process.stdout is not None
    descriptor = process.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(descriptor, selectors.EVENT_READ)
    seen = b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in seen:
        assert time.monotonic() < deadline, f"no {marker!r} within {timeout}s; got:\n{seen!r}"
        assert process.poll() is None, f"paddler exited early:\n{seen!r}"
        if selector.select(timeout=0.5):
            seen += os.read(descriptor, 65536)
    return seen.decode()


def test_up_serves_the_bundled_model_with_one_command(tmp_path: Path) -> None:
    inference, management = free_ports(2)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "paddler",
            "up",
            "--inference-addr",
            f"127.0.0.1:{inference}",
            "--management-addr",
            f"127.0.0.1:{management}",
            "--slots",
            "1",
            "--log-level",
            "warning",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={key: value for key, value in os.environ.items() if not key.startswith("PADDLER_")},
    )
    try:
        banner = read_until(process, "Press Ctrl-C", timeout=90)
        base_url = f"http://127.0.0.1:{inference}/v1"
        assert f"OpenAI base URL:  {base_url}" in banner
        assert f"curl {base_url}/chat/completions" in banner
        assert f"Dashboard:        http://127.0.0.1:{management}/" in banner
        admin_token = (tmp_path / ".paddler" / "admin-token").read_text().strip()
        assert "Admin token:      kept in .paddler/admin-token" in banner
        assert admin_token not in banner, "stdout is a pipe here: a log, not a person"
        pools = httpx.get(
            f"http://127.0.0.1:{management}/api/v1/pools",
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        assert pools.status_code == 200
        assert (tmp_path / ".paddler" / "state.db").is_file()

        client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
        [model] = client.models.list()
        assert model.id == "SmolLM2-135M-Instruct.Q4_1"
        stream = client.chat.completions.create(
            model=model.id,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=8,
            stream=True,
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert text.strip()
        # the openai README's own example names a model of theirs: up serves any name
        readme_example = client.chat.completions.create(
            model="gpt-5.5", messages=[{"role": "user", "content": "Hello!"}], max_tokens=4
        )
        assert readme_example.choices[0].message.content
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    agents_left = subprocess.run(
        ["pgrep", "-f", f"127.0.0.1:{management}"], capture_output=True, check=False
    )
    assert agents_left.stdout == b"", "the local agent outlived paddler up"


def agent_pids(management: int) -> set[int]:
    """The local agents dialling this management port (not ``paddler up`` itself)."""
    pattern = f"paddler agent --control-plane http://127.0.0.1:{management}"
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return {int(pid) for pid in found.stdout.split()}


def test_up_killed_and_started_again_keeps_its_agent_and_its_secrets(tmp_path: Path) -> None:
    """Its agent token is kept like the admin token: the agent left running is adopted and
    accepted, and no second agent starts (max 1). Neither token reaches the log."""
    inference, management = free_ports(2)
    log_path = tmp_path / "up.log"
    command = [
        *(sys.executable, "-m", "paddler", "up", "--slots", "1", "--log-level", "info"),
        *("--inference-addr", f"127.0.0.1:{inference}"),
        *("--management-addr", f"127.0.0.1:{management}"),
    ]
    env = {key: value for key, value in os.environ.items() if not key.startswith("PADDLER_")}
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=log, env=env
            )
        processes.append(process)
        return process

    survivors: set[int] = set()
    try:
        banner = read_until(start(), "Press Ctrl-C", timeout=90)
        survivors = agent_pids(management)
        assert len(survivors) == 1
        processes[0].kill()
        processes[0].wait(timeout=30)
        assert agent_pids(management) == survivors, "the agent outlives a killed paddler up"

        banner += read_until(start(), "Press Ctrl-C", timeout=120)
        state = tmp_path / ".paddler"
        for name in ("admin-token", "agent-token"):
            assert stat.S_IMODE((state / name).stat().st_mode) == 0o600
        admin_token = (state / "admin-token").read_text().strip()
        agents = httpx.get(
            f"http://127.0.0.1:{management}/api/v1/agents",
            headers={"Authorization": f"Bearer {admin_token}"},
        ).json()["data"]
        connected = [agent for agent in agents if agent["connected"]]
        assert len(connected) == 1 and connected[0]["state"] == "ready", agents
        assert agent_pids(management) == survivors, "a second agent was started"
        log = log_path.read_text(errors="replace")
        assert "refused an agent" not in log
        for secret in (admin_token, (state / "agent-token").read_text().strip()):
            assert secret not in log and secret not in banner
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                process.wait(timeout=30)
        for pid in survivors & agent_pids(management):
            os.kill(pid, signal.SIGKILL)


def test_the_admin_token_is_shown_to_a_person_at_a_terminal() -> None:
    from control_plane.settings import ControlPlaneSettings
    from paddler.cli.up import _shown_admin_token

    settings = ControlPlaneSettings(admin_token="s3cret", state_dir=Path(".paddler"))
    assert _shown_admin_token(settings, True, terminal=True) == (
        "s3cret  (kept in .paddler/admin-token)"
    )
    assert _shown_admin_token(settings, True, terminal=False) == "kept in .paddler/admin-token"
    assert _shown_admin_token(settings, False, terminal=False) == "from your settings"


def test_db_commands_upgrade_report_and_downgrade(tmp_path: Path) -> None:
    upgraded = paddler("db", "upgrade", cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"database at revision {head()}" in upgraded.stdout
    assert (tmp_path / ".paddler" / "state.db").is_file()
    assert paddler("db", "current", cwd=tmp_path).stdout.strip() == head()
    downgraded = paddler("db", "downgrade", "base", cwd=tmp_path)
    assert downgraded.returncode == 0, downgraded.stderr
    assert paddler("db", "current", cwd=tmp_path).stdout.strip() == "base (empty)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("agent", "--model", "/no/such/model.gguf"), "model file not found: /no/such/model.gguf"),
        (("agent", "--control-plane", "ftp://x", "--model", __file__), "not an http(s)://"),
        (("control-plane", "--max-buffered-requests", "lots"), "expected int, got 'lots'"),
        (("control-plane", "--config", "missing.toml"), "config file not found"),
        (("agent", "--slots", "0"), "--slots must be greater than 0"),
        (
            ("control-plane", "--management-addr", "0.0.0.0:18060"),
            "is reachable from other hosts, so any of them could join as an agent",
        ),
        (("agent", "--batch-size", "0"), "--batch-size must be greater than 0"),
        (("control-plane", "--model-aliases", "gpt-5.5"), "'gpt-5.5' is not alias=pool"),
        (("agent", "--kv-size", "-1"), "kv_size and shutdown_grace cannot be negative"),
        (
            ("agent", "--model", __file__, "--chat-template", "/no/such/template.jinja"),
            "cannot read the chat template",
        ),
    ],
)
def test_bad_settings_exit_with_a_clear_message(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = paddler(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_busy_port_is_named_in_the_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        result = paddler("control-plane", "--inference-addr", address, cwd=tmp_path)
    assert result.returncode == 1
    assert f"cannot listen on {address}: Address already in use" in result.stderr
