"""This replica's usage on its way to SQL, and what it reads back: the other replicas' rate
counts and every key's tokens so far today and this month.

Usage is added up in memory per key, model and hour, and rate counts per key and minute;
``flush`` (every 0.5 s, and at shutdown) adds them to SQL and reads back. A flush that fails
loses nothing: what it could not write is written by the next.

A key's spent tokens for a budget are the tokens SQL held for the period at the last read,
plus this replica's usage not in that read yet (not flushed, or flushed since). To keep the
reads cheap with many keys, the month is read as the month before today, read again every
minute and when the day turns, plus today, read at every flush.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from control_plane.db.usage_store import UsageDelta, UsageStore, start_of_hour
from control_plane.tenancy.rate_windows import epoch_minute

MONTH_REREAD = timedelta(minutes=1)

Counts = dict[tuple[int, int], tuple[int, int]]  # (key id, minute) -> (requests, tokens)
TokensByHour = dict[tuple[int, datetime], int]  # (key id, hour) -> tokens


def start_of_day(moment: datetime) -> datetime:
    return start_of_hour(moment).replace(hour=0)


def start_of_month(moment: datetime) -> datetime:
    return start_of_day(moment).replace(day=1)


def start_of_next_day(moment: datetime) -> datetime:
    return start_of_day(moment) + timedelta(days=1)


def start_of_next_month(moment: datetime) -> datetime:
    month = start_of_month(moment)
    return month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)


class UsageLedger:
    def __init__(self, store: UsageStore | None, replica: str) -> None:
        self._store = store
        self._replica = replica
        self._usage: dict[tuple[int, str, datetime], list[float]] = {}
        self._rates: dict[tuple[int, int], list[int]] = {}
        self.others: Counts = {}  # the other replicas' rate counts, as last read
        self._unread: dict[int, dict[datetime, int]] = {}  # tokens not in the last read
        self._written: TokensByHour = {}  # flushed since the last read
        self._today: datetime | None = None
        self._today_tokens: dict[int, int] = {}
        self._month: datetime | None = None
        self._month_before_today: dict[int, int] = {}
        self._month_read_at: datetime | None = None

    def record(
        self,
        key_id: int,
        model: str,
        at: datetime,
        *,
        prompt_tokens: int,
        completion_tokens: int,
        error: bool,
        queue_seconds: float,
    ) -> None:
        """One request's usage, ended at ``at``."""
        hour = start_of_hour(at)
        tally = self._usage.setdefault((key_id, model, hour), [0, 0, 0, 0, 0.0])
        tally[0] += 1
        tally[1] += prompt_tokens
        tally[2] += completion_tokens
        tally[3] += int(error)
        tally[4] += queue_seconds
        tokens = prompt_tokens + completion_tokens
        if tokens:
            by_hour = self._unread.setdefault(key_id, {})
            by_hour[hour] = by_hour.get(hour, 0) + tokens

    def count_rate(self, key_id: int, minute: int, requests: int, tokens: int) -> None:
        """Requests and tokens (a correction: either may be negative) for a key's window."""
        counts = self._rates.setdefault((key_id, minute), [0, 0])
        counts[0] += requests
        counts[1] += tokens

    def tokens_since(self, key_id: int, since: datetime) -> int:
        """The key's tokens in the hours from ``since``, the start of today or of this month."""
        read = 0
        if since == self._today:
            read = self._today_tokens.get(key_id, 0)
        elif since == self._month and self._today is not None and self._today >= since:
            read = self._month_before_today.get(key_id, 0) + self._today_tokens.get(key_id, 0)
        unread = self._unread.get(key_id, {})
        return read + sum(tokens for hour, tokens in unread.items() if hour >= since)

    async def flush(self, now: datetime, *, read_budgets: bool) -> None:
        """Write what was counted, then read the others' rate counts and, if ``read_budgets``,
        the keys' tokens of today and this month. Raises what SQL raised."""
        if self._store is None:
            self._usage.clear()
            self._rates.clear()
            self._forget_before(start_of_month(now))
            return
        await self._write_usage(self._store)
        await self._write_rates(self._store)
        self.others = await self._store.others_rate_counts(
            self._replica, epoch_minute(now.timestamp()) - 1
        )
        if read_budgets:
            await self._read_budgets(self._store, now)
        else:  # no key has a budget: the first read, once one has, will hold what was written
            written, self._written = self._written, {}
            self._mark_read(written)
        self._forget_before(start_of_month(now))

    async def _write_usage(self, store: UsageStore) -> None:
        usage, self._usage = self._usage, {}
        if not usage:
            return
        deltas = [
            UsageDelta(key_id, model, hour, int(r), int(p), int(c), int(e), q)
            for (key_id, model, hour), (r, p, c, e, q) in usage.items()
        ]
        try:
            await store.add(deltas)
        except BaseException:
            for entry, tally in usage.items():
                kept = self._usage.setdefault(entry, [0, 0, 0, 0, 0.0])
                for index, value in enumerate(tally):
                    kept[index] += value
            raise
        for (key_id, _, hour), (_, prompt, completion, _, _) in usage.items():
            if prompt or completion:
                written = self._written.get((key_id, hour), 0)
                self._written[key_id, hour] = written + int(prompt + completion)

    async def _write_rates(self, store: UsageStore) -> None:
        rates, self._rates = self._rates, {}
        counts = {entry: (r, t) for entry, (r, t) in rates.items() if r or t}
        try:
            await store.add_rate_counts(self._replica, counts)
        except BaseException:
            for entry, (requests, tokens) in rates.items():
                self.count_rate(*entry, requests, tokens)
            raise

    async def _read_budgets(self, store: UsageStore, now: datetime) -> None:
        today, month = start_of_day(now), start_of_month(now)
        written, self._written = self._written, {}
        try:
            if self._month_is_stale(now, today, month, written):
                month_tokens = await store.tokens_since(month)
                today_tokens = await store.tokens_since(today)
                self._month_before_today = {
                    key_id: max(0, tokens - today_tokens.get(key_id, 0))
                    for key_id, tokens in month_tokens.items()
                    if today != month
                }
                self._month, self._month_read_at = month, now
            else:
                today_tokens = await store.tokens_since(today)
        except BaseException:
            for entry, tokens in written.items():
                self._written[entry] = self._written.get(entry, 0) + tokens
            raise
        self._today, self._today_tokens = today, today_tokens
        self._mark_read(written)

    def _mark_read(self, written: TokensByHour) -> None:
        for (key_id, hour), tokens in written.items():
            by_hour = self._unread.get(key_id, {})
            left = by_hour.get(hour, 0) - tokens
            if left > 0:
                by_hour[hour] = left
            else:
                by_hour.pop(hour, None)

    def _month_is_stale(
        self, now: datetime, today: datetime, month: datetime, written: TokensByHour
    ) -> bool:
        """Whether the month before today must be read again: it is another day or month, a
        minute has passed (another replica's usage of an earlier hour may have come in late),
        or this replica just wrote usage of an earlier day."""
        return (
            self._month != month
            or self._today != today
            or self._month_read_at is None
            or now - self._month_read_at >= MONTH_REREAD
            or any(hour < today for _, hour in written)
        )

    def _forget_before(self, month: datetime) -> None:
        for key_id in list(self._unread):
            by_hour = self._unread[key_id]
            for hour in [hour for hour in by_hour if hour < month]:
                del by_hour[hour]
            if not by_hour:
                del self._unread[key_id]
        for entry in [entry for entry in self._written if entry[1] < month]:
            del self._written[entry]
