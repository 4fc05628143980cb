"""Whether a key's request may go in now, and the accounts of those that did.

``Tenancy.admit`` checks, in order: the key may use the model (404), its daily and monthly
token budgets are not spent (429 ``insufficient_quota``), the request fits under its requests
and tokens per minute (429 ``requests`` / ``tokens``), and it has fewer requests in flight
than its ``max_concurrent`` (429). A request let in is charged one request and its estimated
tokens (estimates.py) and gets a ``Ticket``; settling the ticket puts the real tokens in the
estimate's place and records the usage. Bootstrap keys and the open API have no limits, only
usage (as key id 0).

Per-minute limits and budgets count every replica's usage (see rate_windows.py and
usage_ledger.py for how closely); ``max_concurrent`` counts this replica's requests only,
and so do the in-flight estimates a budget adds to what has been used.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from prometheus_client import CollectorRegistry

from control_plane.db.key_store import KeyRecord
from control_plane.db.models import utc_now
from control_plane.db.usage_store import UsageStore
from control_plane.serving.jobs import InferenceJob
from control_plane.tenancy import refusals
from control_plane.tenancy.callers import Caller
from control_plane.tenancy.directory import KeyDirectory
from control_plane.tenancy.estimates import estimated_cost
from control_plane.tenancy.metrics import KeyMetrics
from control_plane.tenancy.observer import TenancyObserver
from control_plane.tenancy.rate_windows import RateWindows, Window, epoch_minute
from control_plane.tenancy.tickets import Settlement, Ticket
from control_plane.tenancy.usage_ledger import (
    UsageLedger,
    start_of_day,
    start_of_month,
    start_of_next_day,
    start_of_next_month,
)
from paddler.protocol import JobRequest

logger = logging.getLogger("paddler.tenancy")

Limit = tuple[refusals.LimitKind, int, Window]  # a per-minute limit and the key's window


class Tenancy:
    def __init__(
        self,
        directory: KeyDirectory,
        usage_store: UsageStore | None,
        registry: CollectorRegistry,
        clock: Callable[[], datetime] = utc_now,
        *,
        replica: str | None = None,
        observer: TenancyObserver | None = None,
    ) -> None:
        self.directory = directory
        self.replica = replica or uuid.uuid4().hex[:16]  # this control plane, in rate_windows
        self.observer = TenancyObserver() if observer is None else observer
        self.metrics = KeyMetrics(registry)
        self._clock = clock
        self._windows = RateWindows()
        self._ledger = UsageLedger(usage_store, self.replica)
        self._in_flight: dict[int, int] = {}  # key id -> unsettled tickets
        self._in_flight_tokens: dict[int, int] = {}  # key id -> their estimated tokens
        self._failing: set[str] = set()  # parts of sync failing, to log a failure once

    def admit(self, caller: Caller, model: str, request: JobRequest) -> Ticket:
        """A ticket for ``caller``'s request for ``model``; raises OpenAIError if refused."""
        now = self._clock()
        cost = estimated_cost(request)
        minute = epoch_minute(now.timestamp())
        key = caller.key
        headers: dict[str, str] = {}
        if key is not None:
            self._check(key, model, cost, now)
            if _has_rate_limits(key):
                self._windows.charge(key.id, minute, 1, cost)
                self._ledger.count_rate(key.id, minute, 1, cost)
                headers = _headers(self._limits(key, now.timestamp()))
        key_id = caller.key_id
        self._in_flight[key_id] = self._in_flight.get(key_id, 0) + 1
        self._in_flight_tokens[key_id] = self._in_flight_tokens.get(key_id, 0) + cost
        return Ticket(caller, model, cost, minute, headers, self._settle)

    def register(self, job: InferenceJob, ticket: Ticket) -> None:
        """Settle ``ticket`` when ``job`` ends (through ``observer``); call before submitting."""
        self.observer.register(job, ticket)

    def in_flight(self, caller: Caller) -> int:
        """The caller's admitted requests not settled yet, on this replica."""
        return self._in_flight.get(caller.key_id, 0)

    async def sync(self) -> None:
        """Read changed keys, write usage, read the others' rate counts and the budgets' usage.
        Never raises: a part that fails is logged and tried again at the next sync."""
        await self._attempt("key refresh", self.directory.refresh())
        now = self._clock()
        flush = self._ledger.flush(now, read_budgets=self.directory.has_budgets)
        if await self._attempt("usage flush", flush):
            self._windows.replace_others(self._ledger.others)
        self._windows.forget_before(epoch_minute(now.timestamp()) - 1)

    def _check(self, key: KeyRecord, model: str, cost: int, now: datetime) -> None:
        if key.models is not None and model not in key.models:
            self.metrics.rejected(key.name, "model")
            raise refusals.model_not_allowed(model)
        self._check_budgets(key, now)
        limits = self._limits(key, now.timestamp())
        for kind, limit, window in limits:
            requested = 1 if kind == "requests" else cost
            wait = window.seconds_until_room(limit, requested)
            if wait == 0.0:
                continue
            self.metrics.rejected(key.name, kind)
            headers = _headers(limits)
            if wait is None:
                raise refusals.request_too_large(
                    key=key.name, model=model, limit=limit, requested=requested, headers=headers
                )
            raise refusals.rate_limited(
                kind,
                key=key.name,
                model=model,
                limit=limit,
                used=window.count(),
                requested=requested,
                wait=wait,
                headers=headers,
            )
        if key.max_concurrent is not None and self._in_flight.get(key.id, 0) >= key.max_concurrent:
            self.metrics.rejected(key.name, "concurrency")
            raise refusals.too_many_concurrent(
                key=key.name, limit=key.max_concurrent, headers=_headers(limits)
            )

    def _check_budgets(self, key: KeyRecord, now: datetime) -> None:
        budgets: list[tuple[refusals.Period, int | None, datetime, datetime]] = [
            ("daily", key.daily_token_budget, start_of_day(now), start_of_next_day(now)),
            ("monthly", key.monthly_token_budget, start_of_month(now), start_of_next_month(now)),
        ]
        for period, budget, since, renews_at in budgets:
            if budget is None:
                continue
            spent = self._ledger.tokens_since(key.id, since) + self._in_flight_tokens.get(key.id, 0)
            if spent >= budget:
                self.metrics.rejected(key.name, f"{period}_budget")
                raise refusals.budget_spent(
                    key=key.name,
                    period=period,
                    budget=budget,
                    spent=spent,
                    now=now,
                    renews_at=renews_at,
                )

    def _limits(self, key: KeyRecord, timestamp: float) -> list[Limit]:
        """The key's per-minute limits with its windows at ``timestamp``."""
        limits: list[Limit] = []
        if key.requests_per_minute is not None:
            window = self._windows.requests(key.id, timestamp)
            limits.append(("requests", key.requests_per_minute, window))
        if key.tokens_per_minute is not None:
            window = self._windows.tokens(key.id, timestamp)
            limits.append(("tokens", key.tokens_per_minute, window))
        return limits

    def _settle(self, ticket: Ticket, settlement: Settlement) -> None:
        caller = ticket.caller
        key_id = caller.key_id
        self._in_flight[key_id] -= 1
        self._in_flight_tokens[key_id] -= ticket.estimated_tokens
        if not self._in_flight[key_id]:
            del self._in_flight[key_id], self._in_flight_tokens[key_id]
        now = self._clock()
        used = settlement.prompt_tokens + settlement.completion_tokens
        # A correction for a minute already out of the window would change nothing.
        current_minute = epoch_minute(now.timestamp())
        if _has_rate_limits(caller.key) and ticket.minute >= current_minute - 1:
            self._windows.charge(key_id, ticket.minute, 0, used - ticket.estimated_tokens)
            self._ledger.count_rate(key_id, ticket.minute, 0, used - ticket.estimated_tokens)
        self._ledger.record(
            key_id,
            ticket.model,
            now,
            prompt_tokens=settlement.prompt_tokens,
            completion_tokens=settlement.completion_tokens,
            error=settlement.outcome in ("error", "rejected"),
            queue_seconds=settlement.queue_seconds,
        )
        self.metrics.settled(
            caller.name,
            ticket.model,
            settlement.outcome,
            settlement.prompt_tokens,
            settlement.completion_tokens,
        )

    async def _attempt(self, part: str, work: Awaitable[None]) -> bool:
        try:
            await work
        except Exception:
            if part not in self._failing:
                logger.warning("tenancy %s failed; retrying every sync", part, exc_info=True)
            self._failing.add(part)
            return False
        if part in self._failing:
            self._failing.discard(part)
            logger.info("tenancy %s works again", part)
        return True


def _headers(limits: list[Limit]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for kind, limit, window in limits:
        headers |= refusals.limit_headers(kind, limit, window)
    return headers


def _has_rate_limits(key: KeyRecord | None) -> bool:
    return key is not None and (
        key.requests_per_minute is not None or key.tokens_per_minute is not None
    )
