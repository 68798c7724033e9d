"""Prometheus metrics of learning from traffic, registered on the gateway's own registry.

Counters add up across replicas (PromQL ``sum``); the live quality gauges are computed at scrape
time over this replica's last ``learning.metrics_window`` judged comparisons per policy (the
whole store's figures: ``ferryman learn report``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.learning.quality import Judged, summarize

#: What happened to an answered request of a learning policy (the shadow rate is shadowed / all).
SAMPLE_OUTCOMES = ("shadowed", "not_sampled", "opted_out", "over_budget", "saturated", "store_down", "unsuitable")


class _LiveQuality(Collector):
    """Gauges over the recent judged comparisons of each policy, computed when scraped."""

    def __init__(self, window: int) -> None:
        self._window = window
        self.recent: dict[str, deque[Judged]] = {}

    def add(self, policy: str, judged: Judged) -> None:
        self.recent.setdefault(policy, deque(maxlen=self._window)).append(judged)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        names = {
            "n": ("ferryman_learning_live_judged", "Judged comparisons behind the live figures (this replica)."),
            "strong_share": (
                "ferryman_learning_live_strong_share",
                "Share of judged requests served by the strong tier.",
            ),
            "quality_gap": (
                "ferryman_learning_live_quality_gap",
                "Quality given up against all-strong on judged traffic (win-rate points, 0..1).",
            ),
            "pgr": ("ferryman_learning_live_pgr", "Performance gap recovered by the live policy on judged traffic."),
            "savings": ("ferryman_learning_live_savings", "1 - policy cost / all-strong cost on judged traffic."),
            "router_apgr": ("ferryman_learning_live_router_apgr", "APGR of the policy's router on judged traffic."),
        }
        families = {k: GaugeMetricFamily(name, doc, labels=["policy"]) for k, (name, doc) in names.items()}
        for policy, items in self.recent.items():
            report = summarize(items)
            if report is None:
                continue
            values = report.as_dict()
            for key, family in families.items():
                if values[key] is not None:
                    family.add_metric([policy], float(values[key]))
        yield from families.values()


class LearningMetrics:
    """Every learning metric; label values are policy, model, tier and outcome names only."""

    def __init__(self, registry: CollectorRegistry, window: int) -> None:
        r = registry
        self.samples = Counter(
            "ferryman_learning_requests",
            "Answered requests of learning policies by what shadowing did with them: " + ", ".join(SAMPLE_OUTCOMES),
            ["policy", "outcome"],
            registry=r,
        )
        self.shadow_calls = Counter(
            "ferryman_learning_shadow_calls",
            "Shadow calls to the other tier's model by outcome (ok, error, timeout, breaker_open, cancelled).",
            ["model", "outcome"],
            registry=r,
        )
        self.shadow_inflight = Gauge(
            "ferryman_learning_shadow_inflight",
            "Shadow jobs admitted and not done: running, or waiting for a running one (above shadow.max_concurrent).",
            registry=r,
        )
        self.spend = Counter(
            "ferryman_learning_spend_usd", "Learning spend in US dollars by kind (shadow, judge).", ["kind"], registry=r
        )
        self.budget_today = Gauge(
            "ferryman_learning_budget_spent_today_usd",
            "Shadow + judge spend of the current UTC day as this replica knows it (all replicas with Redis).",
            registry=r,
        )
        self.budget_cap = Gauge("ferryman_learning_budget_cap_usd", "The daily learning budget.", registry=r)
        self.judge_orders = Counter(
            "ferryman_learning_judge_answers",
            "Judge answers per order by parsed verdict (strong, weak, tie, invalid, error).",
            ["verdict"],
            registry=r,
        )
        self.verdicts = Counter(
            "ferryman_learning_judge_verdicts",
            "Combined verdicts (strong, weak, tie, inconsistent, invalid, error); only the first three are labels.",
            ["verdict"],
            registry=r,
        )
        self.inconsistent = Counter(
            "ferryman_learning_judge_inconsistent",
            "Comparisons whose two orders disagreed (position bias; scored as tie or discarded).",
            registry=r,
        )
        self.judged = Counter(
            "ferryman_learning_judged",
            "Labelled comparisons by policy, served tier and verdict (PromQL can rebuild quality figures from them).",
            ["policy", "served_tier", "verdict"],
            registry=r,
        )
        self.judged_cost = Counter(
            "ferryman_learning_judged_cost_usd",
            "Costs on labelled comparisons: kind=policy (what the served tier cost), strong (all-strong), weak.",
            ["policy", "kind"],
            registry=r,
        )
        self.store_ops = Counter(
            "ferryman_learning_store_ops",
            "Store operations by op and outcome (ok, error, timeout, dropped).",
            ["op", "outcome"],
            registry=r,
        )
        self.feedback = Counter(
            "ferryman_learning_feedback",
            "Feedback calls by outcome (good, bad, unknown_id, invalid, store_down).",
            ["outcome"],
            registry=r,
        )
        self.live = _LiveQuality(window)
        registry.register(self.live)

    def add_judged(self, policy: str, judged: Judged) -> None:
        self.judged.labels(policy, judged.served_tier, judged.verdict.value).inc()
        policy_cost = judged.strong_cost_usd if judged.served_tier == "strong" else judged.weak_cost_usd
        self.judged_cost.labels(policy, "policy").inc(policy_cost)
        self.judged_cost.labels(policy, "strong").inc(judged.strong_cost_usd)
        self.judged_cost.labels(policy, "weak").inc(judged.weak_cost_usd)
        self.live.add(policy, judged)
