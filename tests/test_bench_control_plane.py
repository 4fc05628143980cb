"""bench/control_plane.py runs: its fake agent joins a real control plane over the real
protocol and serves, and a short run prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_short_run_prints_the_request_table() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "control_plane.py"),
            *("--only", "requests", "--seconds", "0.3", "--no-peer"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    served = [row for row in rows if row[:2] == ["control", "plane"] and len(row) == 8]
    assert [(row[2], row[3]) for row in served] == [
        ("1", "stream"),
        ("50", "stream"),
        ("1", "whole"),
        ("50", "whole"),
    ]
    assert all(float(row[4].replace(",", "")) > 0 for row in served), result.stdout
    assert "failed" not in result.stdout
    assert "c=50 stream: control plane =" in result.stdout
