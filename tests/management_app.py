"""A control plane started in-process with its management app, for API tests that need no
agent: the real app, store (SQLite in the test's directory) and settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from quart import Quart

from control_plane.app import create_management_app
from control_plane.settings import ControlPlaneSettings
from control_plane.state import ControlPlane

TOKEN = "admin-secret"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    state = ControlPlane(ControlPlaneSettings(state_dir=tmp_path, admin_token=TOKEN))
    await state.start()
    yield state
    state.closing.set()
    await state.stop()


@pytest.fixture
def app(plane: ControlPlane) -> Quart:
    return create_management_app(plane)
