"""The loop that scales one pool through a provider (design §8).

``PoolAutoscaler.run`` reconciles the provider's instances with the ``instances`` table once
(``control_plane.autoscaler.reconcile``), then ticks about once a second, and at once when the
scheduler buffers a request of a pool without free capacity (``wake``). Each tick:

1. copies what the fleet saw of each launched instance's agent into its row: hello
   (``registered_at``), first ``ready`` status (``model_loaded_at``), first token
   (``control_plane.autoscaler.live_instances`` keeps the rows);
2. asks the provider about live instances: one that ended on its own is a crash (logged as a
   warning with the provider's exit reason, "agent exited: SIGSEGV"), and while booting also a
   failed boot; when the provider cannot answer, every instance keeps its state and the next
   question waits out a growing backoff;
3. builds a ``ScalingSnapshot`` and applies what ``decide`` returns: launch, drain and
   terminate, replace a boot that timed out, mark the pool failing (the scheduler then answers
   its requests 503 ``capacity_unavailable``), hold launches back after crashes (``backoff``);
   ``control_plane.autoscaler.provisioning`` launches, drains and terminates.

Every action is logged and written to ``scaling_events``. Provider calls block, so they run in
a thread. A failed reconcile or tick is retried after a backoff, never ends the loop
(``control_plane.autoscaler.supervision``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from control_plane.autoscaler.decisions import (
    Action,
    AgentView,
    BackOff,
    Crashes,
    DrainAndTerminate,
    ForgetCrashes,
    Launch,
    MarkFailing,
    ReplaceBooting,
    ScalingPolicy,
    ScalingSnapshot,
    decide,
)
from control_plane.autoscaler.live_instances import LiveInstances
from control_plane.autoscaler.metrics import ScalingMetrics
from control_plane.autoscaler.moments import moment
from control_plane.autoscaler.observer import AutoscalerObserver
from control_plane.autoscaler.provisioning import Provisioner
from control_plane.autoscaler.supervision import RetryBackoff, run_supervised
from control_plane.db.scaling_store import BOOTING, DRAINING, InstanceRow, ScalingStore
from control_plane.providers.base import (
    AgentSpec,
    InstanceState,
    InstanceStatus,
    Provider,
    ProviderError,
)
from control_plane.serving.fleet import AgentLink, Fleet
from control_plane.serving.scheduler import Scheduler

logger = logging.getLogger("paddler.autoscaler")

TICK_SECONDS = 1.0
DESCRIBE_EVERY_SECONDS = 1.0


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
        self.fleet = fleet
        self.scheduler = scheduler
        self.observer = observer
        self.metrics = metrics if metrics is not None else ScalingMetrics()
        self.clock = clock
        self.instances = LiveInstances(pool, store, self.metrics, clock)
        self.provisioner = Provisioner(
            pool, provider, fleet, self.instances, drain_timeout=drain_timeout, clock=clock
        )
        self.failed_boots = 0
        self.failing_since: float | None = None
        self.crashes: Crashes | None = None
        self.backoff: BackOff | None = None  # launches wanted but held back, as of the last tick
        self._backoff_announced: float | None = None  # the ``until`` of the latest backoff event
        self.loop_backoff = RetryBackoff()  # reconcile and ticks that failed in a row
        self.describe_backoff = RetryBackoff()  # describe calls the provider could not answer
        self._wake = asyncio.Event()
        self._next_describe = 0.0

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

    def provider_error(self) -> str | None:
        """The failure the loop is backing off from now, if any."""
        return self.loop_backoff.last_error or self.describe_backoff.last_error

    def machines(self) -> int:
        return self.instances.count()

    def instance_states(self) -> dict[str, int]:
        """Live instances by state (booting, ready, draining)."""
        return self.instances.states()

    def expected_wait(self) -> float | None:
        """Seconds until a cold start under way should be serving, from recent cold starts;
        None when nothing is booting, there is no history to go by or the pool is failing."""
        return None if self.failing else self.instances.expected_wait()

    # the loop

    async def run(self, stop: asyncio.Event) -> None:
        """Reconcile, then tick until ``stop``: failures back off, never end the loop
        (``control_plane.autoscaler.supervision``)."""
        await run_supervised(
            self.pool,
            self.reconcile,
            self.tick,
            self._wake,
            stop,
            tick_seconds=TICK_SECONDS,
            backoff=self.loop_backoff,
        )

    async def close(self, *, terminate: bool) -> None:
        """Stop draining; with ``terminate``, stop every instance of the pool too."""
        await self.provisioner.close(terminate=terminate)

    async def reconcile(self) -> None:
        """Make the table agree with the provider (``control_plane.autoscaler.reconcile``)."""
        await self.instances.reconcile(self.provider, self.policy.max_agents)

    async def tick(self) -> None:
        now = self.clock()
        links = self.fleet.in_pool(self.pool)
        await self.instances.sync(links, self._agent_ready)
        await self._check_provider(now)
        snapshot = self._snapshot(now, links)
        actions = decide(self.policy, snapshot)
        await self._hold_launches(next((a for a in actions if isinstance(a, BackOff)), None))
        for action in actions:
            await self._apply(action, now)

    # what the instances did

    async def _agent_ready(self, row: InstanceRow) -> None:
        self.failed_boots = 0
        if self.failing:
            self.failing_since = None
            await self.instances.record_event(
                "recovered", f"{row.provider_id} is ready; serving again"
            )

    async def _check_provider(self, now: float) -> None:
        ids = [pid for pid in self.instances.rows if not self.provisioner.draining(pid)]
        if not ids or now < self._next_describe:
            return
        self._next_describe = now + DESCRIBE_EVERY_SECONDS
        try:
            statuses = await asyncio.to_thread(self.provider.describe, ids)
        except ProviderError as error:
            # Unknown is not gone: every instance keeps the state it had.
            delay = self.describe_backoff.failed(error)
            self._next_describe = now + delay
            logger.warning(
                "pool %s: could not describe instances (%s); keeping their states, "
                "asking again in %.1fs",
                self.pool,
                error,
                delay,
            )
            return
        self.describe_backoff.succeeded()
        for provider_id, status in statuses.items():
            row = self.instances.rows.get(provider_id)
            if row is None:
                continue
            if status.state == InstanceState.RUNNING and row.running_at is None:
                await self.instances.update(row, running_at=moment(now))
            elif status.state == InstanceState.TERMINATED:
                await self._ended_on_its_own(row, status, now)

    async def _ended_on_its_own(self, row: InstanceRow, status: InstanceStatus, now: float) -> None:
        """A crash: the instance's fate is the exit reason when the provider knows it."""
        if row.state == BOOTING:
            self.failed_boots += 1
            what, action = "ended before its agent was ready", "boot_failed"
        else:
            what, action = "ended on its own", "gone"
        cause = status.exit_reason or what
        crashes = self.crashes.count if self.crashes is not None else 0
        self.crashes = Crashes(crashes + 1, now, cause)
        reason = f"{row.provider_id} {what}"
        await self.instances.close(row.provider_id, status.exit_reason or reason)
        if status.exit_reason:
            reason += f": {status.exit_reason}"
        await self.instances.record_event(action, reason, -1, level=logging.WARNING)

    def _snapshot(self, now: float, links: list[AgentLink]) -> ScalingSnapshot:
        agents = []
        serving = set()
        for link in links:
            if link.state not in ("ready", "draining"):
                continue
            row = self.instances.row_of(link)
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
        return ScalingSnapshot(
            now=now,
            buffered_requests=self.scheduler.queued(self.pool),
            agents=tuple(agents),
            booting=self.instances.booting(serving),
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
                await self.provisioner.terminate(action.provider_id, action.reason, "replace")
            case MarkFailing():
                self.failing_since = now
                failed = self.observer.fail_waiting(self.scheduler, self.pool, action.reason)
                await self.instances.record_event(
                    "mark_failing", f"{action.reason}; {failed} waiting request(s) answered 503"
                )
            case DrainAndTerminate():
                await self.provisioner.drain(action)
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
            await self.instances.record_event("backoff", backoff.reason, level=logging.WARNING)

    async def _launch(self, action: Launch, now: float) -> None:
        if action.probe:
            self.failing_since = now
        try:
            await self.provisioner.launch(self.spec, action)
        except ProviderError as error:
            self.failed_boots += action.count
            await self.instances.record_event("launch_failed", f"{action.reason}; {error}")
