"""The loop that scales one pool through a provider (design §8).

``PoolAutoscaler.run`` reconciles the provider's instances with the ``instances`` table once
(``control_plane.autoscaler.reconcile``), then ticks about once a second, and at once when the
scheduler buffers a request of a pool without free capacity (``wake``). Each tick:

1. copies what the fleet saw of each launched instance's agent into its row: hello
   (``registered_at``), first ``ready`` status (``model_loaded_at``), first token;
2. asks the provider about live instances: one that ended on its own is a crash (logged as a
   warning with the provider's exit reason, "agent exited: SIGSEGV"), and while booting also a
   failed boot;
3. builds a ``PoolSnapshot`` and applies what ``decide`` returns: launch, drain and
   terminate, replace a boot that timed out, mark the pool failing (the scheduler then answers
   its requests 503 ``capacity_unavailable``), hold launches back after crashes (``backoff``).

Every action is logged and written to ``scaling_events``. Provider calls block, so they run in
a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from control_plane.autoscaler.decisions import (
    Action,
    AgentView,
    BackOff,
    BootingInstance,
    Crashes,
    DrainAndTerminate,
    ForgetCrashes,
    Launch,
    MarkFailing,
    PoolSnapshot,
    ReplaceBooting,
    ScalingPolicy,
    decide,
)
from control_plane.autoscaler.metrics import ScalingMetrics
from control_plane.autoscaler.observer import AutoscalerObserver
from control_plane.autoscaler.reconcile import Reconciled, reconcile_instances
from control_plane.db.scaling_store import (
    BOOTING,
    DRAINING,
    MILESTONES,
    READY,
    InstanceRow,
    ScalingStore,
)
from control_plane.providers.base import (
    AgentSpec,
    InstanceState,
    InstanceStatus,
    Provider,
    ProviderError,
)
from control_plane.serving.fleet import AgentLink, Fleet
from control_plane.serving.scheduler import Scheduler
from paddler import protocol

logger = logging.getLogger("paddler.autoscaler")

TICK_SECONDS = 1.0
DESCRIBE_EVERY_SECONDS = 1.0


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class PoolAutoscaler:
    def __init__(
        self,
        pool: str,
        policy: ScalingPolicy,
        provider: Provider,
        spec: AgentSpec,
        store: ScalingStore,
        fleet: Fleet,
        scheduler: Scheduler,
        observer: AutoscalerObserver,
        *,
        drain_timeout: float = 120.0,
        metrics: ScalingMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pool = pool
        self.policy = policy
        self.provider = provider
        self.spec = spec
        self.store = store
        self.fleet = fleet
        self.scheduler = scheduler
        self.observer = observer
        self.drain_timeout = drain_timeout
        self.metrics = metrics if metrics is not None else ScalingMetrics()
        self.clock = clock
        self.failed_boots = 0
        self.failing_since: float | None = None
        self.crashes: Crashes | None = None
        self.backoff: BackOff | None = None  # launches wanted but held back, as of the last tick
        self._backoff_announced: float | None = None  # the ``until`` of the latest backoff event
        self._live: dict[str, InstanceRow] = {}  # provider id -> row, for this pool
        self._boot_started: dict[str, float] = {}  # provider id -> start of its boot timer
        self._cold_starts: list[float] = []  # seconds from launch to model loaded, latest last
        self._drains: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._last_describe = 0.0

    # what others ask

    def wake(self) -> None:
        """Tick now: a request is waiting and the pool has no free slot."""
        self._wake.set()

    @property
    def failing(self) -> bool:
        return self.failing_since is not None

    def failing_reason(self) -> str | None:
        """Why the pool answers 503 ``capacity_unavailable``; None while it is not failing."""
        if self.failing_since is None:
            return None
        return f"{self.failed_boots} agents in a row failed to start; the next try is automatic"

    def backoff_reason(self) -> str | None:
        """Why launches wait now ("next launch in 4 s after 3 crashes: …"); None if they don't."""
        return None if self.backoff is None else self.backoff.reason

    def machines(self) -> int:
        return len(self._live)

    def instance_states(self) -> dict[str, int]:
        """Live instances by state (booting, ready, draining)."""
        counts: dict[str, int] = {}
        for row in self._live.values():
            counts[row.state] = counts.get(row.state, 0) + 1
        return counts

    def expected_wait(self) -> float | None:
        """Seconds until a cold start under way should be serving, from recent cold starts;
        None when nothing is booting or there is no history to go by."""
        if not self._cold_starts or self.failing:
            return None
        booting = [
            self._boot_started[pid] for pid, row in self._live.items() if row.state == BOOTING
        ]
        if not booting:
            return None
        typical = statistics.median(self._cold_starts[-5:])
        return max(0.0, typical - (self.clock() - min(booting)))

    # the loop

    async def run(self, stop: asyncio.Event) -> None:
        await self.reconcile()
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.tick()
            except Exception:  # a database or provider hiccup must not end autoscaling
                logger.exception("autoscaler tick of pool %s failed", self.pool)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_SECONDS)

    async def close(self, *, terminate: bool) -> None:
        """Stop draining; with ``terminate``, stop every instance of the pool too."""
        for task in self._drains.values():
            task.cancel()
        await asyncio.gather(*self._drains.values(), return_exceptions=True)
        if terminate:
            for provider_id in list(self._live):
                await self._terminate(provider_id, "the control plane stopped", "terminate")

    async def reconcile(self) -> None:
        """Make the table agree with the provider (``control_plane.autoscaler.reconcile``)."""
        self._cold_starts = list(reversed(await self.store.recent_cold_starts(self.pool)))
        await reconcile_instances(
            self.pool,
            self.policy.max_agents,
            self.provider,
            self.store,
            self.clock(),
            Reconciled(self._live, self._boot_started),
            self._event,
        )

    async def tick(self) -> None:
        now = self.clock()
        links = self.fleet.in_pool(self.pool)
        await self._sync_links(links)
        await self._check_provider(now)
        snapshot = self._snapshot(now, links)
        actions = decide(self.policy, snapshot)
        await self._hold_launches(next((a for a in actions if isinstance(a, BackOff)), None))
        for action in actions:
            await self._apply(action, now)

    # keeping rows up to date

    async def _sync_links(self, links: list[AgentLink]) -> None:
        for link in links:
            row = self._live.get(link.instance_id or "")
            if row is None:
                continue
            changes: dict[str, object] = {}
            if row.registered_at is None:
                changes["registered_at"] = _moment(link.connected_at)
            if link.ready_at is not None and row.model_loaded_at is None:
                changes["model_loaded_at"] = _moment(link.ready_at)
                if row.state == BOOTING:
                    changes["state"] = READY
            if link.first_token_at is not None and row.first_token_at is None:
                changes["first_token_at"] = _moment(link.first_token_at)
            if changes:
                await self._update(row, **changes)
            if "model_loaded_at" in changes:
                await self._agent_ready(row, link)

    async def _agent_ready(self, row: InstanceRow, link: AgentLink) -> None:
        seconds = self._live[row.provider_id].cold_start()["model_loaded"] or 0.0
        self._cold_starts.append(seconds)
        logger.info("pool %s: %s ready %.1fs after its launch", self.pool, row.provider_id, seconds)
        self.failed_boots = 0
        if self.failing:
            self.failing_since = None
            await self._event("recovered", f"{row.provider_id} is ready; serving again")

    async def _check_provider(self, now: float) -> None:
        ids = [pid for pid in self._live if pid not in self._drains]
        if not ids or now - self._last_describe < DESCRIBE_EVERY_SECONDS:
            return
        self._last_describe = now
        try:
            statuses = await asyncio.to_thread(self.provider.describe, ids)
        except ProviderError as error:
            logger.warning("pool %s: could not describe instances: %s", self.pool, error)
            return
        for provider_id, status in statuses.items():
            row = self._live.get(provider_id)
            if row is None:
                continue
            if status.state == InstanceState.RUNNING and row.running_at is None:
                await self._update(row, running_at=_moment(now))
            elif status.state == InstanceState.TERMINATED:
                await self._ended_on_its_own(row, status, now)

    async def _ended_on_its_own(self, row: InstanceRow, status: InstanceStatus, now: float) -> None:
        """A crash: the instance's fate is the exit reason when the provider knows it."""
        self._forget(row.provider_id)
        if row.state == BOOTING:
            self.failed_boots += 1
            what, action = "ended before its agent was ready", "boot_failed"
        else:
            what, action = "ended on its own", "gone"
        cause = status.exit_reason or what
        crashes = self.crashes.count if self.crashes is not None else 0
        self.crashes = Crashes(crashes + 1, now, cause)
        reason = f"{row.provider_id} {what}"
        await self.store.mark_terminated(row.provider_id, status.exit_reason or reason)
        if status.exit_reason:
            reason += f": {status.exit_reason}"
        await self._event(action, reason, -1, level=logging.WARNING)

    def _snapshot(self, now: float, links: list[AgentLink]) -> PoolSnapshot:
        agents = []
        serving = set()
        for link in links:
            if link.state not in ("ready", "draining"):
                continue
            row = self._live.get(link.instance_id or "")
            serving.add(link.instance_id)
            agents.append(
                AgentView(
                    agent_id=link.agent_id,
                    busy_slots=len(link.jobs),
                    total_slots=link.slots,
                    idle_since=None if link.jobs else link.idle_since,
                    draining=link.state == "draining"
                    or (row is not None and row.state == DRAINING),
                    managed=row is not None,
                    ready_since=link.ready_at,
                )
            )
        booting = tuple(
            BootingInstance(pid, self._boot_started[pid])
            for pid, row in self._live.items()
            if row.state == BOOTING and pid not in serving
        )
        return PoolSnapshot(
            now=now,
            buffered_requests=self.scheduler.queued(self.pool),
            agents=tuple(agents),
            booting=booting,
            failed_boots=self.failed_boots,
            failing_since=self.failing_since,
            crashes=self.crashes,
        )

    # applying decisions

    async def _apply(self, action: Action, now: float) -> None:
        match action:
            case Launch():
                await self._launch(action, now)
            case ReplaceBooting():
                self.failed_boots += 1
                await self._terminate(action.provider_id, action.reason, "replace")
            case MarkFailing():
                self.failing_since = now
                failed = self.observer.fail_waiting(self.scheduler, self.pool, action.reason)
                await self._event(
                    "mark_failing", f"{action.reason}; {failed} waiting request(s) answered 503"
                )
            case DrainAndTerminate():
                await self._drain(action)
            case ForgetCrashes():
                self.crashes = None
                logger.info("pool %s: %s", self.pool, action.reason)
            case BackOff():
                pass  # _hold_launches has announced it

    async def _hold_launches(self, backoff: BackOff | None) -> None:
        """Keep the pending backoff; announce each once (an event, a warning, the gauge)."""
        self.backoff = backoff
        self.metrics.restart_backoff(self.pool, 0.0 if backoff is None else backoff.delay)
        if backoff is not None and backoff.until != self._backoff_announced:
            self._backoff_announced = backoff.until
            await self._event("backoff", backoff.reason, level=logging.WARNING)

    async def _launch(self, action: Launch, now: float) -> None:
        if action.probe:
            self.failing_since = now
        called = self.clock()  # the breakdown starts at the launch call, on our clock
        try:
            records = await asyncio.to_thread(self.provider.launch, self.spec, action.count)
        except ProviderError as error:
            self.failed_boots += action.count
            await self._event("launch_failed", f"{action.reason}; {error}")
            return
        for record in records:
            row = await self.store.add_instance(
                self.provider.name,
                record.provider_id,
                self.pool,
                _moment(called),
            )
            self._live[row.provider_id] = row
            self._boot_started[row.provider_id] = called
        ids = ", ".join(record.provider_id for record in records)
        await self._event("launch", f"{action.reason}: {ids}", len(records))

    async def _drain(self, action: DrainAndTerminate) -> None:
        link = next(
            (other for other in self.fleet.in_pool(self.pool) if other.agent_id == action.agent_id),
            None,
        )
        row = self._live.get(link.instance_id or "") if link is not None else None
        if link is None or row is None or row.provider_id in self._drains:
            return
        link.send(protocol.Drain())
        link.state = "draining"  # no new jobs from now on, before the agent's status says so
        await self._update(row, state=DRAINING)
        await self._event("drain", f"{row.provider_id}: {action.reason}")
        task = asyncio.create_task(
            self._terminate_when_drained(link, row.provider_id, action.reason)
        )
        self._drains[row.provider_id] = task

    async def _terminate_when_drained(self, link: AgentLink, provider_id: str, reason: str) -> None:
        deadline = self.clock() + self.drain_timeout
        while self.clock() < deadline:
            if not link.jobs or link not in self.fleet.in_pool(self.pool):
                break
            await asyncio.sleep(0.2)
        try:
            await self._terminate(provider_id, f"scaled down: {reason}", "terminate")
        except Exception:
            logger.exception("pool %s: could not terminate %s", self.pool, provider_id)
        finally:
            self._drains.pop(provider_id, None)

    async def _terminate(self, provider_id: str, reason: str, action: str) -> None:
        await asyncio.to_thread(self.provider.terminate, provider_id)
        self._forget(provider_id)
        await self.store.mark_terminated(provider_id, reason)
        await self._event(action, f"{provider_id}: {reason}", -1)

    # bookkeeping

    def _forget(self, provider_id: str) -> None:
        self._live.pop(provider_id, None)
        self._boot_started.pop(provider_id, None)

    async def _update(self, row: InstanceRow, **changes: object) -> None:
        await self.store.update_instance(row.provider_id, **changes)
        for name in MILESTONES:
            moment = changes.get(name)
            if isinstance(moment, datetime):
                seconds = (moment - row.launched_at).total_seconds()
                self.metrics.phase_reached(self.pool, name.removesuffix("_at"), seconds)
        if row.provider_id in self._live:
            self._live[row.provider_id] = replace(self._live[row.provider_id], **changes)  # type: ignore[arg-type]

    async def _event(
        self, action: str, reason: str, change: int = 0, *, level: int = logging.INFO
    ) -> None:
        """Record what happened, after the fact: ``change`` machines were added (negative:
        removed), so the pool went from ``len - change`` to ``len`` machines."""
        after = len(self._live)
        before = after - change
        await self.store.add_event(self.pool, action, before, after, reason)
        self.metrics.scaling_action(self.pool, action)
        logger.log(
            level, "pool %s: %s (%d -> %d agents): %s", self.pool, action, before, after, reason
        )
