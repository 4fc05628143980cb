"""Management JSON API for usage: requests, tokens, errors and queueing per key, model and hour
(or day), as the replicas flushed them to the database."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from quart import Blueprint
from quart_schema import validate_querystring, validate_response

from control_plane.db.usage_store import UsageRow
from control_plane.management.keys_api import IsoDatetime, find_key
from control_plane.state import ControlPlane, current_control_plane

usage_api = Blueprint("usage_api", __name__)

BOOTSTRAP = "(bootstrap)"  # the keys of the api_keys setting, and the open API: key id 0
BOOTSTRAP_KEY_ID = 0


class UsageQuery(BaseModel):
    key: str | None = Field(None, description=f"one key's name ({BOOTSTRAP!r}: bootstrap keys)")
    model: str | None = Field(None, description="one model")
    since: datetime | None = Field(None, description="from this hour on (UTC if naive)")
    until: datetime | None = Field(None, description="before this hour (UTC if naive)")
    granularity: Literal["hour", "day"] = "hour"

    @field_validator("since", "until")
    @classmethod
    def _in_utc(cls, moment: datetime | None) -> datetime | None:
        if moment is None or moment.tzinfo is not None:
            return moment
        return moment.replace(tzinfo=UTC)


class UsageTotals(BaseModel):
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    errors: int = 0
    queue_seconds: float = Field(0.0, description="seconds its requests waited for a slot")


class UsagePeriod(UsageTotals):
    key: str
    model: str
    period_start: IsoDatetime = Field(description="start of the UTC hour or day")


class UsageReport(BaseModel):
    data: list[UsagePeriod] = Field(description="by period, then key, then model")
    totals: UsageTotals


@dataclass
class _Sums:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: int = 0
    queue_seconds: float = 0.0

    def add(self, row: UsageRow) -> None:
        self.requests += row.requests
        self.prompt_tokens += row.prompt_tokens
        self.completion_tokens += row.completion_tokens
        self.errors += row.errors
        self.queue_seconds += row.queue_seconds

    def totals(self) -> UsageTotals:
        return UsageTotals(**self._fields())

    def period(self, key: str, model: str, start: datetime) -> UsagePeriod:
        return UsagePeriod(key=key, model=model, period_start=start, **self._fields())

    def _fields(self) -> dict[str, int | float]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "errors": self.errors,
            "queue_seconds": round(self.queue_seconds, 3),
        }


async def key_names(state: ControlPlane) -> dict[int, str]:
    """Every key's name by id, the bootstrap keys' included."""
    names = {record.id: record.name for record in await state.key_store.list()}
    names[BOOTSTRAP_KEY_ID] = BOOTSTRAP
    return names


def period_start(hour: datetime, granularity: str) -> datetime:
    return hour.replace(hour=0) if granularity == "day" else hour


def usage_report(rows: Iterable[UsageRow], names: dict[int, str], granularity: str) -> UsageReport:
    periods: dict[tuple[datetime, str, str], _Sums] = {}
    everything = _Sums()
    for row in rows:
        name = names.get(row.key_id, f"#{row.key_id}")
        periods.setdefault((period_start(row.hour, granularity), name, row.model), _Sums()).add(row)
        everything.add(row)
    return UsageReport(
        data=[
            sums.period(key, model, start) for (start, key, model), sums in sorted(periods.items())
        ],
        totals=everything.totals(),
    )


@usage_api.get("/api/v1/usage")
@validate_querystring(UsageQuery)
@validate_response(UsageReport)
async def usage(query_args: UsageQuery) -> UsageReport:
    """Usage per period, key and model, with its totals; every filter is optional."""
    state = current_control_plane()
    key_ids: list[int] | None = None
    if query_args.key == BOOTSTRAP:
        key_ids = [BOOTSTRAP_KEY_ID]
    elif query_args.key is not None:
        key_ids = [(await find_key(state, query_args.key)).id]
    rows = await state.usage_store.rows(
        key_ids=key_ids, model=query_args.model, since=query_args.since, until=query_args.until
    )
    return usage_report(rows, await key_names(state), query_args.granularity)
