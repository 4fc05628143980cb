"""Ids of responses and their items, prefixed by kind as OpenAI's are (``resp_``, ``msg_``...)."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"
