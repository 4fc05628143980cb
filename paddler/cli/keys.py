"""``paddler keys``: make, list and revoke client API keys and read their usage, through a
running control plane's management API."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from control_plane.settings import ControlPlaneSettings

ADMIN_TOKEN_FILE = "admin-token"
ADMIN_TOKEN_ENV = "PADDLER_ADMIN_TOKEN"
LIMIT_FLAGS = {
    "rpm": "requests_per_minute",
    "tpm": "tokens_per_minute",
    "max_concurrent": "max_concurrent",
    "max_buffered": "max_buffered",
    "daily_tokens": "daily_token_budget",
    "monthly_tokens": "monthly_token_budget",
}


class KeysCommandError(Exception):
    """Something the operator must fix; its message is printed as is."""


def add_keys_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ControlPlaneSettings()
    parser.add_argument(
        "--management-url",
        default=f"http://{defaults.management_addr}",
        help="the control plane's management address (default: %(default)s)",
    )
    parser.add_argument(
        "--admin-token",
        help=f"admin token (default: env {ADMIN_TOKEN_ENV}, else --state-dir's {ADMIN_TOKEN_FILE})",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=defaults.state_dir,
        help="the control plane's state directory (default: %(default)s)",
    )
    actions = parser.add_subparsers(dest="keys_action", required=True, metavar="ACTION")

    create = actions.add_parser("create", help="make a key and print its secret, this once")
    create.add_argument("name", help="letters, digits, '.', '_' and '-', at most 64")
    create.add_argument("--team", help="free text to group keys by")
    create.add_argument("--models", help="comma-separated models it may use (default: all)")
    for flag, field in LIMIT_FLAGS.items():
        create.add_argument(
            "--" + flag.replace("_", "-"),
            type=int,
            help=f"{field.replace('_', ' ')} (default: none)",
        )
    create.add_argument("--priority", choices=["high", "normal", "low"], help="default: normal")
    create.add_argument("--expires-in-days", type=float, help="default: never expires")

    actions.add_parser("list", help="every key with its status and limits")

    revoke = actions.add_parser("revoke", help="revoke a key: refused from now on")
    revoke.add_argument("name")

    usage = actions.add_parser("usage", help="requests and tokens per day, key and model")
    usage.add_argument("name", nargs="?", help="one key (default: all; '(bootstrap)': api_keys)")
    usage.add_argument("--since", help="ISO date or time, UTC unless it says otherwise")
    usage.add_argument("--until", help="ISO date or time (exclusive)")
    usage.add_argument("--model", help="one model")
    usage.add_argument("--granularity", choices=["hour", "day"], default="day")


def run_keys(args: argparse.Namespace) -> int:
    try:
        with httpx.Client(
            base_url=args.management_url.rstrip("/"),
            headers={"Authorization": f"Bearer {admin_token(args)}"},
            timeout=30,
        ) as client:
            if args.keys_action == "create":
                return create_key(client, args)
            if args.keys_action == "list":
                return list_keys(client)
            if args.keys_action == "revoke":
                return revoke_key(client, args.name)
            return show_usage(client, args)
    except KeysCommandError as error:
        print(f"paddler keys: {error}", file=sys.stderr)
        return 1
    except httpx.HTTPError as error:
        print(
            f"paddler keys: cannot reach the management API at {args.management_url}: {error}",
            file=sys.stderr,
        )
        return 1


def admin_token(args: argparse.Namespace) -> str:
    """--admin-token, else the environment's, else the one ``paddler up`` kept on disk."""
    token: str = args.admin_token or os.environ.get(ADMIN_TOKEN_ENV, "")
    if token:
        return token
    path = args.state_dir / ADMIN_TOKEN_FILE
    try:
        token = path.read_text().strip()
    except OSError:
        token = ""
    if not token:
        raise KeysCommandError(
            f"no admin token: pass --admin-token, set {ADMIN_TOKEN_ENV}, or run this where "
            f"{path} exists (the control plane writes it)"
        )
    return token


def answer(response: httpx.Response) -> Any:
    """The response's JSON body; an error answer raises with the API's own message."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success:
        return body
    message = response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message") or message
    raise KeysCommandError(f"{message} (HTTP {response.status_code})")


def create_key(client: httpx.Client, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name}
    if args.team is not None:
        body["team"] = args.team
    if args.models is not None:
        body["models"] = [model.strip() for model in args.models.split(",") if model.strip()]
    for flag, field in LIMIT_FLAGS.items():
        if getattr(args, flag) is not None:
            body[field] = getattr(args, flag)
    if args.priority is not None:
        body["priority"] = args.priority
    if args.expires_in_days is not None:
        expires = datetime.now(UTC) + timedelta(days=args.expires_in_days)
        body["expires_at"] = expires.isoformat()
    created = answer(client.post("/api/v1/keys", json=body))
    key = created["key"]
    print(
        f"Created key {key['name']} ({key['prefix']}…). Its secret, shown only this once:",
        file=sys.stderr,
    )
    print(created["secret"])
    return 0


def list_keys(client: httpx.Client) -> int:
    keys = answer(client.get("/api/v1/keys"))["data"]
    header = ["NAME", "TEAM", "PREFIX", "STATUS", "PRIORITY", "MODELS", "RPM", "TPM"]
    header += ["CONCURRENT", "BUFFERED", "DAILY", "MONTHLY", "EXPIRES"]
    rows = [
        [
            key["name"],
            key["team"] or "-",
            key["prefix"],
            key["status"],
            key["priority"],
            ",".join(key["models"]) if key["models"] is not None else "all",
            *(_limit(key[field]) for field in LIMIT_FLAGS.values()),
            (key["expires_at"] or "never")[:16],
        ]
        for key in keys
    ]
    print_table(header, rows)
    return 0


def revoke_key(client: httpx.Client, name: str) -> int:
    key = answer(client.post(f"/api/v1/keys/{_segment(name)}/revoke"))
    print(f"Revoked key {key['name']} ({key['prefix']}…): it is refused from now on.")
    return 0


def show_usage(client: httpx.Client, args: argparse.Namespace) -> int:
    query = {
        "key": args.name,
        "since": args.since,
        "until": args.until,
        "model": args.model,
        "granularity": args.granularity,
    }
    params = {name: value for name, value in query.items() if value is not None}
    report = answer(client.get("/api/v1/usage", params=params))
    header = ["PERIOD", "KEY", "MODEL", "REQUESTS", "PROMPT", "COMPLETION", "TOTAL", "ERRORS"]
    width = 10 if args.granularity == "day" else 16
    rows = [
        [row["period_start"][:width], row["key"], row["model"], *_counts(row)]
        for row in report["data"]
    ]
    rows.append(["total", "", "", *_counts(report["totals"])])
    print_table(header, rows)
    return 0


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    for line in (header, *rows):
        print(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)
            ).rstrip()
        )


def _counts(row: dict[str, Any]) -> list[str]:
    fields = ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "errors")
    return [str(row[field]) for field in fields]


def _limit(value: int | None) -> str:
    return "-" if value is None else str(value)


def _segment(name: str) -> str:
    """``name`` as one path segment: a mistyped name must not reach another route."""
    return quote(name, safe="")
