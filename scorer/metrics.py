"""Prometheus metrics of the scorer, on a registry of their own (one per server)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ScorerMetrics:
    """Requests by method/router/code, latency per router, batch sizes, queue depth and cost, full-window time."""

    def __init__(self, queue_depth: Callable[[], float], queued_cost: Callable[[], float] = lambda: 0) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ferryman_scorer_requests",
            "Score/BatchScore/ListRouters calls by router and status code",
            ["method", "router", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ferryman_scorer_latency_seconds",
            "Server-side latency of scoring calls by method and router",
            ["method", "router"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "ferryman_scorer_batch_size",
            "Items per inference batch",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "ferryman_scorer_queue_depth", "Items waiting for an inference worker", registry=self.registry
        )
        self.queue_depth.set_function(queue_depth)
        self.queued_cost = Gauge(
            "ferryman_scorer_queued_cost",
            "Cost (about tokens) of the items waiting for an inference worker, all callers",
            registry=self.registry,
        )
        self.queued_cost.set_function(queued_cost)
        self.full_window = Gauge(
            "ferryman_scorer_full_window_seconds",
            "Time of one Score of a prompt past the router's window, alone, measured at start-up",
            ["router"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "ferryman_scorer_reloads",
            "Router version changes seen while serving, by outcome (reloaded, failed: the old version kept serving)",
            ["router", "outcome"],
            registry=self.registry,
        )
        self.artifact = Gauge(
            "ferryman_scorer_artifact_info",
            "1 for the artifact version each router serves (<version>@<manifest digest>)",
            ["router", "artifact_version"],
            registry=self.registry,
        )

    def serving(self, router: str, artifact_version: str, previous: str = "") -> None:
        """Record which artifact version ``router`` serves (the previous one's series is removed)."""
        if previous:
            with contextlib.suppress(KeyError):
                self.artifact.remove(router, previous)
        self.artifact.labels(router, artifact_version).set(1)
