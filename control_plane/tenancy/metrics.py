"""Prometheus counters per API key.

A label value per key would let a deployment with thousands of keys swamp Prometheus, so the
first ``MAX_KEY_LABELS`` key names seen get their own label and the others share "other".
The bootstrap keys and the open API are "(bootstrap)".
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

MAX_KEY_LABELS = 100
BOOTSTRAP_LABEL = "(bootstrap)"
OTHER_LABEL = "other"


class KeyMetrics:
    def __init__(self, registry: CollectorRegistry, *, max_keys: int = MAX_KEY_LABELS) -> None:
        self._max_keys = max_keys
        self._labelled: set[str] = set()
        self.requests = Counter(
            "paddler_key_requests",
            "Requests admitted per API key, by model and how they ended: ok, error, withdrawn, "
            "rejected (buffer full)",
            ["key", "model", "outcome"],
            registry=registry,
        )
        self.tokens = Counter(
            "paddler_key_tokens",
            "Tokens used per API key, by kind: prompt or completion",
            ["key", "kind"],
            registry=registry,
        )
        self.rejections = Counter(
            "paddler_key_rejections",
            "Requests refused at admission per API key, by reason: model, daily_budget, "
            "monthly_budget, requests, tokens, concurrency",
            ["key", "reason"],
            registry=registry,
        )

    def label(self, key: str) -> str:
        """The label value of key ``key`` ("" for the bootstrap keys and the open API)."""
        if not key:
            return BOOTSTRAP_LABEL
        if key in self._labelled:
            return key
        if len(self._labelled) < self._max_keys:
            self._labelled.add(key)
            return key
        return OTHER_LABEL

    def settled(
        self, key: str, model: str, outcome: str, prompt_tokens: int, completion_tokens: int
    ) -> None:
        label = self.label(key)
        self.requests.labels(label, model, outcome).inc()
        if prompt_tokens:
            self.tokens.labels(label, "prompt").inc(prompt_tokens)
        if completion_tokens:
            self.tokens.labels(label, "completion").inc(completion_tokens)

    def rejected(self, key: str, reason: str) -> None:
        self.rejections.labels(self.label(key), reason).inc()
