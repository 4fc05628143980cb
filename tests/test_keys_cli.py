"""``paddler keys`` against a real control plane process: make, list and revoke keys, read
their usage; the admin token from flag, environment or state directory; errors exit 1."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from control_plane.db.engine import create_engine, default_database_url
from control_plane.db.key_store import KeyStore
from control_plane.db.usage_store import UsageDelta, UsageStore
from paddler.cli.main import main
from tests.processes import ADMIN_TOKEN, ControlPlane, free_port


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path_factory.mktemp("keys_cli"))
    plane.start()
    yield plane
    plane.stop()


@pytest.fixture(autouse=True)
def no_admin_token_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PADDLER_ADMIN_TOKEN", raising=False)


def keys(
    plane: ControlPlane, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """Run ``paddler keys ARGS`` with the plane's address and admin token."""
    flags = ["--management-url", plane.management_url, "--admin-token", ADMIN_TOKEN]
    code = main(["keys", *flags, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines()]


def test_create_list_and_revoke(plane: ControlPlane, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = keys(
        plane,
        capsys,
        "create",
        "cli-a",
        "--team",
        "red",
        "--models",
        "tiny,big",
        "--rpm",
        "60",
        "--tpm",
        "9000",
        "--max-concurrent",
        "2",
        "--max-buffered",
        "0",
        "--daily-tokens",
        "100000",
        "--monthly-tokens",
        "2000000",
        "--priority",
        "low",
        "--expires-in-days",
        "30",
    )
    assert code == 0, err
    secret = out.strip()
    assert secret.startswith("sk-pfp-") and "\n" not in secret, "stdout is the secret alone"
    assert f"Created key cli-a ({secret[:12]}…)" in err and "shown only this once" in err
    key = plane.management_get("/api/v1/keys/cli-a").json()
    assert (key["team"], key["models"], key["priority"]) == ("red", ["tiny", "big"], "low")
    assert (key["requests_per_minute"], key["tokens_per_minute"]) == (60, 9000)
    assert (key["max_concurrent"], key["max_buffered"]) == (2, 0)
    assert (key["daily_token_budget"], key["monthly_token_budget"]) == (100000, 2000000)
    expires = datetime.fromisoformat(key["expires_at"]) - datetime.now(UTC)
    assert 29 < expires.total_seconds() / 86400 <= 30

    assert keys(plane, capsys, "create", "cli-b")[0] == 0
    code, out, _ = keys(plane, capsys, "list")
    rows = {row[0]: row for row in table(out)[1:]}
    assert table(out)[0][:4] == ["NAME", "TEAM", "PREFIX", "STATUS"]
    assert rows["cli-a"][1:7] == ["red", secret[:12], "active", "low", "tiny,big", "60"]
    assert secret not in out

    code, out, _ = keys(plane, capsys, "revoke", "cli-b")
    assert code == 0 and "Revoked key cli-b" in out
    code, out, _ = keys(plane, capsys, "list")
    assert {row[0]: row[3] for row in table(out)[1:]}["cli-b"] == "revoked"


def test_api_errors_print_its_message_and_exit_1(
    plane: ControlPlane, capsys: pytest.CaptureFixture[str]
) -> None:
    assert keys(plane, capsys, "create", "cli-twice")[0] == 0
    code, out, err = keys(plane, capsys, "create", "cli-twice")
    assert (code, out) == (1, "")
    assert err == "paddler keys: An API key named 'cli-twice' already exists. (HTTP 409)\n"
    code, _, err = keys(plane, capsys, "create", "cli-bad", "--rpm", "-3")
    assert code == 1 and "'requests_per_minute'" in err and "(HTTP 400)" in err
    code, _, err = keys(plane, capsys, "revoke", "nobody/../cli-twice")
    assert code == 1 and "(HTTP 404)" in err
    assert plane.management_get("/api/v1/keys/cli-twice").json()["status"] == "active"
    code, _, err = keys(plane, capsys, "usage", "nobody")
    assert code == 1 and "No API key named 'nobody'" in err

    wrong = main(["keys", "--management-url", plane.management_url, "--admin-token", "x", "list"])
    assert wrong == 1 and "needs the admin token" in capsys.readouterr().err
    unreachable = f"http://127.0.0.1:{free_port()}"
    code = main(["keys", "--management-url", unreachable, "--admin-token", "x", "list"])
    assert code == 1
    assert f"cannot reach the management API at {unreachable}" in capsys.readouterr().err


def test_the_admin_token_comes_from_the_environment_or_the_state_directory(
    plane: ControlPlane,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = ["keys", "--management-url", plane.management_url, "--state-dir", str(tmp_path)]
    assert main([*base, "list"]) == 1
    err = capsys.readouterr().err
    assert "no admin token" in err and str(tmp_path / "admin-token") in err

    (tmp_path / "admin-token").write_text(ADMIN_TOKEN + "\n")
    assert main([*base, "list"]) == 0
    assert capsys.readouterr().out.startswith("NAME")

    monkeypatch.setenv("PADDLER_ADMIN_TOKEN", "not-it")
    assert main([*base, "list"]) == 1, "the environment wins over the file"
    capsys.readouterr()


def test_usage_table(plane: ControlPlane, capsys: pytest.CaptureFixture[str]) -> None:
    assert keys(plane, capsys, "create", "cli-metered")[0] == 0
    key_id = _key_id(plane, "cli-metered")
    hour = datetime(2025, 5, 1, 9, tzinfo=UTC)
    _add_usage(
        plane,
        [
            UsageDelta(key_id, "tiny", hour, 2, 30, 12, 1),
            UsageDelta(key_id, "tiny", hour.replace(hour=10), 1, 5, 5),
            UsageDelta(0, "tiny", hour, 1, 4, 4),
        ],
    )
    code, out, _ = keys(plane, capsys, "usage", "cli-metered", "--since", "2025-05-01")
    assert code == 0
    assert table(out) == [
        ["PERIOD", "KEY", "MODEL", "REQUESTS", "PROMPT", "COMPLETION", "TOTAL", "ERRORS"],
        ["2025-05-01", "cli-metered", "tiny", "3", "35", "17", "52", "1"],
        ["total", "3", "35", "17", "52", "1"],
    ]
    code, out, _ = keys(plane, capsys, "usage", "--granularity", "hour", "--until", "2025-05-02")
    rows = table(out)
    assert rows[1:4] == [
        ["2025-05-01T09:00", "(bootstrap)", "tiny", "1", "4", "4", "8", "0"],
        ["2025-05-01T09:00", "cli-metered", "tiny", "2", "30", "12", "42", "1"],
        ["2025-05-01T10:00", "cli-metered", "tiny", "1", "5", "5", "10", "0"],
    ]


def test_the_installed_command(plane: ControlPlane, tmp_path: Path) -> None:
    """``python -m paddler keys``, as operators run it, token from the environment."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PADDLER_")}
    result = subprocess.run(
        [sys.executable, "-m", "paddler", "keys", "--management-url", plane.management_url, "list"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PADDLER_ADMIN_TOKEN": ADMIN_TOKEN},
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("NAME")
    assert (
        "--expires-in-days"
        in subprocess.run(
            [sys.executable, "-m", "paddler", "keys", "create", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    )


def _key_id(plane: ControlPlane, name: str) -> int:
    async def find() -> int:
        engine = create_engine(_database_url(plane))
        try:
            record = await KeyStore(engine).get(name)
        finally:
            await engine.dispose()
        assert record is not None
        return record.id

    return asyncio.run(find())


def _add_usage(plane: ControlPlane, deltas: list[UsageDelta]) -> None:
    async def add() -> None:
        engine = create_engine(_database_url(plane))
        try:
            await UsageStore(engine).add(deltas)
        finally:
            await engine.dispose()

    asyncio.run(add())


def _database_url(plane: ControlPlane) -> str:
    state_dir = Path(plane.args[plane.args.index("--state-dir") + 1])
    return default_database_url(state_dir)
