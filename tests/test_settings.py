"""Flags beat PADDLER_* variables, which beat the TOML file, which beats defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from control_plane.settings import ControlPlaneSettings
from paddler.settings import SettingsError, add_arguments, resolve


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser, ControlPlaneSettings)
    return parser.parse_args(argv)


def test_defaults() -> None:
    settings = resolve(ControlPlaneSettings, parse(), environ={})
    assert settings.inference_addr == "127.0.0.1:8061"
    assert settings.management_addr == "127.0.0.1:8060"
    assert settings.max_buffered_requests == 100
    assert settings.buffer_timeout == 30.0


def test_precedence_flag_env_file(tmp_path: Path) -> None:
    config = tmp_path / "paddler.toml"
    config.write_text('max_buffered_requests = 7\nbuffer_timeout = 9\nagent_token = "file"\n')
    environ = {"PADDLER_BUFFER_TIMEOUT": "4.5", "PADDLER_AGENT_TOKEN": "env"}
    settings = resolve(
        ControlPlaneSettings,
        parse("--agent-token", "flag"),
        environ=environ,
        config_file=config,
    )
    assert settings.max_buffered_requests == 7
    assert settings.buffer_timeout == 4.5
    assert settings.agent_token == "flag"


@pytest.mark.parametrize(
    ("argv", "environ", "toml", "message"),
    [
        (("--max-buffered-requests", "lots"), {}, "", "--max-buffered-requests: expected int"),
        ((), {"PADDLER_BUFFER_TIMEOUT": "soon"}, "", "PADDLER_BUFFER_TIMEOUT: expected float"),
        ((), {}, "no_such_setting = 1\n", "unknown setting(s): no_such_setting"),
        ((), {}, "max_buffered_requests = \n", "is not valid TOML"),
    ],
)
def test_bad_values_name_their_source(
    tmp_path: Path, argv: tuple[str, ...], environ: dict[str, str], toml: str, message: str
) -> None:
    config = tmp_path / "paddler.toml"
    config.write_text(toml)
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve(ControlPlaneSettings, parse(*argv), environ=environ, config_file=config)


def test_missing_config_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="config file not found"):
        resolve(ControlPlaneSettings, parse(), environ={}, config_file=tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--max-buffered-requests", "0"), "--max-buffered-requests must be greater than 0"),
        (("--buffer-timeout", "-1"), "--buffer-timeout must be greater than 0"),
        (("--log-level", "loud"), "--log-level must be one of"),
    ],
)
def test_out_of_range_values_are_refused(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        resolve(ControlPlaneSettings, parse(*argv), environ={})
