"""A short local multi-replica run: two scorers and two gateways under load (bench/cluster_local.py)."""

from __future__ import annotations

from pathlib import Path

from bench.cluster_local import exercise, format_report
from harness.cluster import LocalCluster


def test_two_scorers_two_gateways_survive_a_scorer_kill_and_a_gateway_sigterm(test_routers: Path) -> None:
    with LocalCluster(scorers=2, gateways=2, routers_dir=test_routers) as cluster:
        report = exercise(cluster, concurrency=8, steady_s=3.0, after_kill_s=3.0, after_term_s=1.5)
        print(format_report(cluster, report))
    steady = report.score_calls_steady
    # Both scorers served a share while both were up; round_robin keeps the shares close.
    assert all(n is not None and n > 0 for n in steady), steady
    assert min(n or 0 for n in steady) >= 0.25 * max(n or 0 for n in steady), steady
    # The killed scorer's metrics are gone; the survivor served everything after the kill.
    assert report.score_calls_end[-1] is None and (report.score_calls_end[0] or 0) > (steady[0] or 0)
    assert set(report.per_gateway) == {0, 1} and min(report.per_gateway.values()) > 0, report.per_gateway
    total = sum(sum(c.values()) for c in report.phases.values())
    assert total >= 50, "the load was too small to show anything"
    assert report.failed == 0, report.phases
    assert len(report.phases) == 3 and all(sum(c.values()) > 0 for c in report.phases.values())
    assert report.in_flight_at_sigterm > 0, "no request was in flight on the gateway at SIGTERM"
    assert report.in_flight_completed == report.in_flight_at_sigterm and report.in_flight_failed == 0
    assert report.sigterm_exit_code == 0
    assert report.passed
