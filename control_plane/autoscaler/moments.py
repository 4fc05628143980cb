"""Clock readings (epoch seconds) as the timezone-aware UTC datetimes the ``instances`` table
stores."""

from __future__ import annotations

from datetime import UTC, datetime


def moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
