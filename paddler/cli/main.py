"""The ``paddler`` command."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.settings import AgentSettings
from control_plane.settings import ControlPlaneSettings
from paddler import __version__, event_loop
from paddler.cli.keys import add_keys_arguments, run_keys
from paddler.logs import configure_logging
from paddler.settings import SettingsError, add_arguments, resolve

if TYPE_CHECKING:
    from agent.engine.embedding_service import EmbeddingService
    from agent.model_sources import ModelFetcher

Main = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paddler",
        description="Serve LLMs from a fleet of llama.cpp agents behind an OpenAI-compatible API.",
    )
    parser.add_argument("--version", action="version", version=f"paddler {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up", help="control plane plus one local agent serving the bundled SmolLM2 model"
    )
    add_arguments(up, ControlPlaneSettings)
    up.add_argument("--model", help="GGUF file for the local agent (default: bundled SmolLM2)")
    up.add_argument("--slots", type=int, default=4, help="slots of the local agent (default 4)")

    control = commands.add_parser("control-plane", help="run the control plane alone")
    add_arguments(control, ControlPlaneSettings)

    agent = commands.add_parser("agent", help="run an agent that joins a control plane")
    add_arguments(agent, AgentSettings)

    db = commands.add_parser("db", help="manage the state database schema")
    db.add_argument("action", choices=["upgrade", "downgrade", "current"])
    db.add_argument("revision", nargs="?", help="target revision (upgrade: head, downgrade: -1)")
    add_arguments(db, ControlPlaneSettings)

    for command in (up, control, agent, db):
        command.add_argument("--config", type=Path, help="TOML file with settings")

    keys = commands.add_parser(
        "keys", help="make, list and revoke client API keys; read their usage"
    )
    add_keys_arguments(keys)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "keys":
        return run_keys(args)
    try:
        if args.command == "agent":
            agent_settings = resolve(AgentSettings, args, config_file=args.config)
            configure_logging(agent_settings.log_level, agent_settings.log_format)
            return run_agent(agent_settings)
        settings = resolve(ControlPlaneSettings, args, config_file=args.config)
        configure_logging(settings.log_level, settings.log_format)
        if args.command == "db":
            return run_db(settings, args.action, args.revision)
        if args.command == "control-plane":
            settings.require_agent_token_off_loopback()
            return _run_until_signalled(_control_plane(settings))
        from paddler.cli.up import run_up

        return _run_until_signalled(lambda stop: run_up(settings, stop, args.model, args.slots))
    except SettingsError as error:
        print(f"paddler: {error}", file=sys.stderr)
        return 2


def _control_plane(settings: ControlPlaneSettings) -> Main:
    from control_plane.server import run_control_plane
    from control_plane.state import ControlPlane

    return lambda stop: run_control_plane(ControlPlane(settings), stop)


def _run_until_signalled(start: Main) -> int:
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await start(stop)

    try:
        event_loop.run(runner())
    except OSError as error:
        print(f"paddler: {error}", file=sys.stderr)
        return 1
    return 0


def run_agent(settings: AgentSettings) -> int:
    from agent.engine.engine import Engine
    from agent.model_sources import ModelSourceError
    from agent.runner import AgentRunner
    from paddler.bundled import ModelNotFound

    try:
        fetcher = _model_fetcher(settings)
    except (ModelNotFound, ModelSourceError) as error:
        print(f"paddler agent: {error}", file=sys.stderr)
        return 2
    model = fetcher.path  # for a remote source: where the download will be
    if fetcher.source.kind == "local" and not model.is_file():
        print(f"paddler agent: model file not found: {model}", file=sys.stderr)
        return 2
    chat_template = None
    if settings.chat_template:
        try:
            chat_template = Path(settings.chat_template).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            print(f"paddler agent: cannot read the chat template: {error}", file=sys.stderr)
            return 2
    try:
        runner = AgentRunner(
            Engine(
                model,
                settings.slots,
                context_size=settings.context_size,
                threads=settings.threads or None,
                batch_size=settings.batch_size,
                kv_size=settings.kv_size or None,
                prompt_cache=settings.prompt_cache,
                chat_template=chat_template,
                cpu_repack=settings.cpu_repack,
            ),
            control_plane=settings.control_plane,
            token=settings.token,
            name=settings.name or f"{socket.gethostname()}-{os.getpid()}",
            pool=settings.pool or model.stem,
            instance_id=settings.instance_id or None,
            reconnect_max_delay=settings.reconnect_max_delay,
            shutdown_grace=settings.shutdown_grace,
            embeddings=_embedding_service(settings, model),
            model_source=fetcher.source.text,
            fetch_model=fetcher.fetch,
            resolve_model=lambda source: _model_fetcher(
                dataclasses.replace(settings, model=source, model_sha256="")
            ),
        )
    except ValueError as error:
        print(f"paddler agent: {error}", file=sys.stderr)
        return 2
    return _run_until_signalled(runner.run)


def _model_fetcher(settings: AgentSettings) -> ModelFetcher:
    from agent.model_sources import ModelFetcher, default_cache_dir, parse_model_source
    from paddler.bundled import bundled_model_path

    source = parse_model_source(settings.model or str(bundled_model_path()), settings.model_sha256)
    return ModelFetcher(
        source,
        Path(settings.model_cache) if settings.model_cache else default_cache_dir(),
        s3_endpoint_url=settings.s3_endpoint_url or None,
        s3_region=settings.s3_region or None,
        max_bytes=settings.max_model_bytes,
        stall_timeout=settings.download_stall_timeout,
    )


def _embedding_service(settings: AgentSettings, model: Path) -> EmbeddingService | None:
    from agent.engine.embedding_service import EmbeddingService

    if not settings.embeddings:
        return None
    return EmbeddingService(
        model,
        context_size=settings.context_size,
        threads=settings.threads or None,
        cpu_repack=settings.cpu_repack,
    )


def run_db(settings: ControlPlaneSettings, action: str, revision: str | None) -> int:
    from control_plane.db import migrate

    url = settings.resolved_database_url
    if action == "upgrade":
        migrate.upgrade(url, revision or "head")
        print(f"database at revision {migrate.current(url)}")
    elif action == "downgrade":
        migrate.downgrade(url, revision or "-1")
        print(f"database at revision {migrate.current(url) or 'base (empty)'}")
    else:
        print(migrate.current(url) or "base (empty)")
    return 0
