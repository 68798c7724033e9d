"""Prometheus metrics of one gateway instance (its own registry, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gateway.types import Decision

BREAKER_STATE_VALUE = {"closed": 0.0, "half-open": 1.0, "open": 2.0}
#: Request duration buckets of the client APIs (HTTP and gRPC), streams included: 5 ms to 5 min.
API_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def api_metrics(
    registry: CollectorRegistry, api: str, label: str, counted: str, timed: str
) -> tuple[Counter, Histogram]:
    """``ferryman_gateway_<api>_requests_total{<label>,code}`` and ``..._<api>_latency_seconds{<label>}``: one
    client API's calls counted by status code and timed (HTTP by route, gRPC by method)."""
    requests = Counter(f"ferryman_gateway_{api}_requests", counted, [label, "code"], registry=registry)
    latency = Histogram(
        f"ferryman_gateway_{api}_latency_seconds", timed, [label], buckets=API_LATENCY_BUCKETS, registry=registry
    )
    return requests, latency


class Metrics:
    """Every metric the gateway exports; label values are model/tier names, never secrets."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ferryman_gateway_requests",
            "Requests by served tier, served model and outcome (ok, degraded, failed, rejected).",
            ["tier", "model", "outcome"],
            registry=r,
        )
        self.decisions = Counter(
            "ferryman_gateway_decisions", "Routing decisions by tier and source.", ["tier", "source"], registry=r
        )
        self.routed = Counter(
            "ferryman_gateway_routed",
            "Routed decisions by policy, tier, the tier's first model and source (scored, scorer_unavailable, sticky).",
            ["policy", "tier", "model", "source"],
            registry=r,
        )
        self.route_scores = Histogram(
            "ferryman_gateway_route_scores",
            "Every score a routing decision used: the top tier's predicted win rate over each lower tier.",
            ["router", "tier"],
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
            registry=r,
        )
        self.breaker_state = Gauge(
            "ferryman_gateway_breaker_state",
            "Circuit breaker state per model endpoint: 0 closed, 1 half-open, 2 open.",
            ["model"],
            registry=r,
        )
        self.breaker_outcomes = Counter(
            "ferryman_gateway_breaker_outcomes",
            "Request outcomes per breaker: success, failure (the model's), unattributed (every model the"
            " request tried failed and none of them serves others), poison (ignored: the request's fault).",
            ["model", "outcome"],
            registry=r,
        )
        self.breaker_probes = Counter(
            "ferryman_gateway_breaker_probes",
            "Requests sent to a model although its breaker was open, because every model of the chain was open.",
            ["model"],
            registry=r,
        )
        self.retries = Counter("ferryman_gateway_retries", "Retries after transient errors.", ["model"], registry=r)
        self.fallbacks = Counter(
            "ferryman_gateway_fallbacks",
            "Models given up on (error or open breaker) in favour of the next in the chain.",
            ["model", "reason"],
            registry=r,
        )
        self.scorer_latency = Histogram(
            "ferryman_gateway_scorer_latency_seconds",
            "Score RPC round-trip time.",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.scorer_failures = Counter(
            "ferryman_gateway_scorer_failures", "Score RPCs that failed or missed their deadline.", ["code"], registry=r
        )
        self.scorer_fallbacks = Counter(
            "ferryman_gateway_scorer_fallbacks",
            "Routed requests sent to the policy's scorer-down tier without a score, by router and reason.",
            ["router", "reason"],
            registry=r,
        )
        self.scorer_fallback_share = Gauge(
            "ferryman_gateway_scorer_fallback_share",
            "Share of routed requests over the last scorer.fallback_window_s that got no score.",
            registry=r,
        )
        self.cost = Counter("ferryman_gateway_cost_usd", "Estimated spend in US dollars.", ["model"], registry=r)
        self.cost_saved = Counter(
            "ferryman_gateway_cost_saved_usd",
            "Estimated saving against sending every request to the first strong model.",
            registry=r,
        )

    def decided(self, decision: Decision) -> None:
        """Count a routing decision: its tier, model and every score it used."""
        tier = decision.tier_name or decision.tier.value
        self.decisions.labels(tier, decision.source.value).inc()
        if decision.tier_name:
            self.routed.labels(decision.policy, tier, decision.model, decision.source.value).inc()
        for ts in decision.tier_scores:
            self.route_scores.labels(decision.router, ts.tier).observe(ts.score)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
