"""The autoscaler's Prometheus metrics, in the control plane's registry (``/metrics``).

- ``paddler_cold_start_seconds{pool,phase}``: seconds from the launch call to each cold-start
  phase — ``running`` (the provider says so), ``registered`` (the agent's hello),
  ``model_loaded`` (its first ``ready`` status), ``first_token`` — observed once per instance,
  when it gets there.
- ``paddler_scaling_actions_total{pool,action}``: every scaling event (launch, drain,
  terminate, replace, boot_failed, gone, backoff, adopt, mark_failing, recovered,
  launch_failed).
- ``paddler_instances{pool,state}``: the autoscaler's live instances by state, at scrape time.
- ``paddler_restart_backoff_seconds{pool}``: how long launches wait after the latest crash
  while that wait holds a launch back; 0 otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from control_plane.db.scaling_store import LIVE_STATES

# A GPU machine may take minutes from the launch call to its first token.
COLD_START_BUCKETS = (0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 180, 300, 600, 900, 1800)

# pool -> state -> instances; read at scrape time.
InstanceCounts = Callable[[], Mapping[str, Mapping[str, int]]]


class ScalingMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.cold_start = Histogram(
            "paddler_cold_start_seconds",
            "Seconds from an instance's launch call to a cold-start phase: running, "
            "registered, model_loaded, first_token",
            ["pool", "phase"],
            buckets=COLD_START_BUCKETS,
            registry=self.registry,
        )
        self.actions = Counter(
            "paddler_scaling_actions",
            "Scaling events by action (launch, drain, terminate, replace, boot_failed, ...)",
            ["pool", "action"],
            registry=self.registry,
        )
        self.backoff = Gauge(
            "paddler_restart_backoff_seconds",
            "Seconds launches wait after the latest crash, while that holds a launch back",
            ["pool"],
            registry=self.registry,
        )

    def phase_reached(self, pool: str, phase: str, seconds: float) -> None:
        self.cold_start.labels(pool, phase).observe(max(0.0, seconds))

    def scaling_action(self, pool: str, action: str) -> None:
        self.actions.labels(pool, action).inc()

    def restart_backoff(self, pool: str, seconds: float) -> None:
        self.backoff.labels(pool).set(seconds)

    def watch(self, counts: InstanceCounts) -> None:
        """Report ``paddler_instances`` from ``counts`` on every scrape."""
        self.registry.register(_InstanceCollector(counts))


class _InstanceCollector(Collector):
    def __init__(self, counts: InstanceCounts) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "paddler_instances",
            "Instances the autoscaler runs, by state (booting, ready, draining)",
            labels=["pool", "state"],
        )
        for pool, states in sorted(self._counts().items()):
            for state in LIVE_STATES:
                gauge.add_metric([pool, state], states.get(state, 0))
        yield gauge
