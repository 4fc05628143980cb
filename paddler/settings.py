"""Settings from flags, ``PADDLER_*`` environment variables and a TOML file.

Each setting is a dataclass field with a ``help`` text. The same name works everywhere:
``--max-buffered-requests`` on the command line, ``PADDLER_MAX_BUFFERED_REQUESTS`` in the
environment and ``max_buffered_requests`` in the TOML file. Flags win over the environment,
which wins over the file, which wins over the default.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

ENV_PREFIX = "PADDLER_"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")

SettingsT = TypeVar("SettingsT")


class SettingsError(Exception):
    """A setting has a value that cannot be used."""


def setting(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


def require_positive(settings: object, *names: str) -> None:
    for name in names:
        value = getattr(settings, name)
        if value <= 0:
            flag = "--" + name.replace("_", "-")
            raise SettingsError(f"{flag} must be greater than 0, got {value}")


def require_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        flag = "--" + name.replace("_", "-")
        raise SettingsError(f"{flag} must be one of {', '.join(choices)}, got {value!r}")


def require_log_level(level: str) -> None:
    require_choice("log_level", level.lower(), LOG_LEVELS)


def require_log_format(log_format: str) -> None:
    require_choice("log_format", log_format, LOG_FORMATS)


def add_arguments(parser: argparse.ArgumentParser, settings_class: type[Any]) -> None:
    """Add one flag per settings field; flags default to None so unset ones can be told apart."""
    for field in dataclasses.fields(settings_class):
        flag = "--" + field.name.replace("_", "-")
        env_name = ENV_PREFIX + field.name.upper()
        help_text = f"{field.metadata['help']} (env {env_name}; default: {field.default!r})"
        if field.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(flag, default=None, help=help_text, metavar=field.name.upper())


def resolve(
    settings_class: type[SettingsT],
    flags: argparse.Namespace,
    *,
    environ: Mapping[str, str] = os.environ,
    config_file: Path | None = None,
) -> SettingsT:
    """Build the settings object, taking each value from the first source that sets it."""
    file_values = _read_config_file(config_file) if config_file else {}
    known = {field.name for field in dataclasses.fields(settings_class)}  # type: ignore[arg-type]
    unknown = sorted(set(file_values) - known)
    if unknown:
        raise SettingsError(f"{config_file}: unknown setting(s): {', '.join(unknown)}")

    values: dict[str, Any] = {}
    for field in dataclasses.fields(settings_class):  # type: ignore[arg-type]
        raw: Any = getattr(flags, field.name, None)
        source = "--" + field.name.replace("_", "-")
        if raw is None and ENV_PREFIX + field.name.upper() in environ:
            raw = environ[ENV_PREFIX + field.name.upper()]
            source = ENV_PREFIX + field.name.upper()
        if raw is None and field.name in file_values:
            raw = file_values[field.name]
            source = f"{config_file}: {field.name}"
        if raw is not None:
            values[field.name] = _convert(raw, field.default, source)
    return settings_class(**values)


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError as error:
        raise SettingsError(f"config file not found: {path}") from error
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path} is not valid TOML: {error}") from error
    return {key.replace("-", "_"): value for key, value in data.items()}


def _convert(raw: Any, default: Any, source: str) -> Any:
    """Turn a flag, environment or TOML value into the type of the field's default."""
    try:
        if isinstance(default, bool):
            if isinstance(raw, bool):
                return raw
            lowered = str(raw).strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, Path):
            return Path(raw)
        return str(raw)
    except (TypeError, ValueError) as error:
        expected = type(default).__name__
        raise SettingsError(f"{source}: expected {expected}, got {raw!r}") from error
