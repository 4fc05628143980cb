"""Keeping the autoscaler's loop alive through provider and database failures.

Reconciling at start is retried until it succeeds (no tick runs before it: ticking without
knowing what already runs could launch twice); a failed tick is logged and the next one waits
out a backoff that doubles with each failure in a row, up to a minute, so a throttled or
unreachable provider is not hammered, and one success resets it. Nothing but ``stop`` ends the
loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from control_plane.providers.base import ProviderError

logger = logging.getLogger("paddler.autoscaler")

Step = Callable[[], Awaitable[None]]


@dataclass
class RetryBackoff:
    """Seconds to wait after each failure in a row: ``first``, doubling, at most ``most``."""

    first: float = 1.0
    most: float = 60.0
    failures: int = 0
    last_error: str | None = None  # the latest failure, until a success

    def failed(self, error: BaseException) -> float:
        self.failures += 1
        self.last_error = str(error) or type(error).__name__
        return float(min(self.most, self.first * 2 ** (self.failures - 1)))

    def succeeded(self) -> None:
        self.failures = 0
        self.last_error = None


async def run_supervised(
    pool: str,
    reconcile: Step,
    tick: Step,
    wake: asyncio.Event,
    stop: asyncio.Event,
    *,
    tick_seconds: float,
    backoff: RetryBackoff,
) -> None:
    """Reconcile until it succeeds, then tick every ``tick_seconds`` (or at once on ``wake``)
    until ``stop``; failures wait out ``backoff`` instead of ending the loop."""
    while not stop.is_set():
        try:
            await reconcile()
        except Exception as error:
            delay = backoff.failed(error)
            _log_failure(pool, "reconciling with the provider", error, delay)
            await _sleep(stop, delay)
            continue
        if backoff.failures:
            logger.info("pool %s: reconciled after %d failure(s)", pool, backoff.failures)
        backoff.succeeded()
        break
    while not stop.is_set():
        wake.clear()
        try:
            await tick()
        except Exception as error:
            delay = backoff.failed(error)
            _log_failure(pool, "autoscaler tick", error, delay)
            await _sleep(stop, delay)  # wakes wait too: a failing provider is not hammered
            continue
        if backoff.failures:
            logger.info("pool %s: autoscaling again after %d failure(s)", pool, backoff.failures)
            backoff.succeeded()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), tick_seconds)


def _log_failure(pool: str, what: str, error: Exception, delay: float) -> None:
    """A provider's refusal is expected weather (one line); anything else gets its traceback."""
    logger.warning(
        "pool %s: %s failed (%s); retrying in %.1fs",
        pool,
        what,
        error,
        delay,
        exc_info=not isinstance(error, ProviderError),
    )


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
