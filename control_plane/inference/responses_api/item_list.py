"""The page of a stored response's input items that ``GET .../input_items`` asks for:
``order`` (``desc``, the default, or ``asc``), ``limit`` (1 to 100, 20 by default) and
``after`` (an item id)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from control_plane.errors import invalid_value

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def item_list(items: Sequence[Any], query: Mapping[str, str]) -> dict[str, Any]:
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid_value("order", "expected 'asc' or 'desc'")
    limit_text = query.get("limit", str(DEFAULT_LIMIT))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
        raise invalid_value("limit", f"expected an integer from 1 to {MAX_LIMIT}")
    ordered = list(items) if order == "asc" else list(reversed(items))
    after = query.get("after")
    if after is not None:
        ids = [item.get("id") for item in ordered]
        if after not in ids:
            raise invalid_value("after", f"no input item has the id {after!r}")
        ordered = ordered[ids.index(after) + 1 :]
    page = ordered[: int(limit_text)]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(ordered) > len(page),
    }
