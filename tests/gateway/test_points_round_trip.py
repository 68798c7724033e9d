"""``ferryman calibrate points`` round trip: fit a policy's operating points on a graded file, paste the printed
YAML into the gateway configuration, load it with the gateway's loader, and route through a real gateway and
a real scorer (test routers) on loopback: the realised mean cost meets the ``cost_share`` target.

The graded file is synthetic and deterministic: the 50 ``SAMPLE_PROMPTS``, graded so that the router's own
scores order them (a lower tier loses more to the top the likelier the router says it does), so the hull has
threshold points between the single tiers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml

from ferryman.cli import main
from ferryman.gateway.v1 import gateway_pb2 as pb
from ferryman.gateway.v1 import gateway_pb2_grpc
from ferryman.scorer.v1 import scorer_pb2, scorer_pb2_grpc
from gateway.config import load_config
from gateway.tiers import OperatingPoint, relative_costs
from harness.gateway import CLIENT_KEY, GatewayThread
from harness.scorer import SAMPLE_PROMPTS
from harness.tiers import three_tier_dict
from lab.eval.tier_metrics import HullPoint

AUTH = (("authorization", f"Bearer {CLIENT_KEY}"),)
TARGET = 0.3
ROUNDS = 4  # every prompt routed this many times


def _scores(address: str, pairs: tuple[tuple[str, str], ...]) -> np.ndarray:
    """The scorer's win rates of the top tier over each lower tier, per sample prompt (what the gateway asks)."""
    with grpc.insecure_channel(address) as channel:
        stub = scorer_pb2_grpc.ScorerServiceStub(channel)
        requests = [
            scorer_pb2.ScoreRequest(router="mf", prompt=p, strong_model=s, weak_model=w)
            for p in SAMPLE_PROMPTS
            for s, w in pairs
        ]
        reply = stub.BatchScore(scorer_pb2.BatchScoreRequest(requests=requests))
    return np.array([r.strong_win_rate for r in reply.responses]).reshape(len(SAMPLE_PROMPTS), len(pairs))


def _graded(path: Path, scores: np.ndarray) -> Path:
    """Grades the router's scores explain: the top tier 9, a lower tier worse the more the router expects it to lose
    (spread over the sample's range of scores), keyed by tier name for small and by first model for medium."""
    spread = (scores - scores.min(axis=0)) / np.ptp(scores, axis=0)
    rows = [
        {
            "prompt": p,
            "grades": {"small": round(8.5 - 6 * s[0], 3), "weak-anthropic": round(8.8 - 3 * s[1], 3), "large": 9},
        }
        for p, s in zip(SAMPLE_PROMPTS, spread, strict=True)
    ]
    rows.insert(3, {"prompt": "a row without the top tier's grade", "grades": {"small": 3, "medium": 4}})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_fitted_points_paste_into_the_config_and_the_gateway_meets_the_target(
    fakes, test_routers: Path, scorer_address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = three_tier_dict(
        fakes, scorer_target=f"dns:///{scorer_address}", policies={"budget": {"router": "mf", "threshold": 0.5}}
    )
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(data), encoding="utf-8")
    before = load_config(config_path)
    cost = np.array(relative_costs(before.tiers, before.models))
    scores = _scores(scorer_address, before.tiers.pairs())
    graded = _graded(tmp_path / "graded.jsonl", scores)
    base = ["calibrate", "points", "--config", str(config_path), "--policy", "budget", "--graded", str(graded)]

    # in this process over the artifact: no target yet, so the block says to add one
    assert main([*base, "--router-dir", str(test_routers / "mf"), "--bootstrap", "200", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "add cost_share: a target between 0.01 and 1" in out
    assert "| threshold " in out and "held-out margin [90 %]" in out  # the table, with threshold points in it
    # through the running scorer, with a target: the same points, written with the target
    block_path, png = tmp_path / "points.yaml", tmp_path / "points.png"
    argv = [
        *base,
        "--scorer",
        scorer_address,
        "--cost-share",
        str(TARGET),
        "--out",
        str(block_path),
        "--plot",
        str(png),
    ]
    assert main([*argv, "--bootstrap", "200"]) == 0
    printed = capsys.readouterr()
    assert "51 rows, 50 graded for every tier; 1 skipped for a missing grade (rows without: large 1)" in printed.err
    assert "scoring 50 prompts x 2 tier pair(s)" in printed.err  # progress on stderr
    block = block_path.read_text(encoding="utf-8")
    assert block in printed.out and f"cost_share: {TARGET}" in block
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    listed = [line for line in out.splitlines() if line.startswith("  - {cost: ")]
    assert listed and listed == [line for line in block.splitlines() if line.startswith("  - {cost: ")]

    # paste the block under the policy, in place of its threshold, and load it as the gateway does
    pasted = dict(data)
    pasted["policies"] = {"budget": {"router": "mf"} | yaml.safe_load(block)}
    pasted_path = tmp_path / "pasted.yaml"
    pasted_path.write_text(yaml.safe_dump(pasted), encoding="utf-8")
    config = load_config(pasted_path)
    policy = config.policies["budget"]
    points = policy.operating_points
    assert policy.cost_share == TARGET and len(points) >= 3
    assert points[0].tier == 0 and points[-1].tier == 2 and any(p.threshold is not None for p in points)
    # each point's cost is its mean cost on the graded prompts, by the lab's mirror of the gateway's rule
    assert all(math.isclose(p.cost, float(cost[_chosen(p, scores, cost)].mean()), abs_tol=1e-6) for p in points)

    # route every prompt ROUNDS times: each request takes one of the two points around the target
    low = max(i for i, p in enumerate(points) if p.cost <= TARGET)
    around = {low: points[low], low + 1: points[low + 1]}
    rule = config.tier_rule()
    realised, drawn = [], {low: 0, low + 1: 0}
    with GatewayThread(config) as g, grpc.insecure_channel(g.grpc_target) as channel:
        assert g.gateway._policy is not None
        g.gateway._policy._draw.seed(11)  # a fixed draw: the test does not flake
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        for _ in range(ROUNDS):
            for j, prompt in enumerate(SAMPLE_PROMPTS):
                msgs = [pb.ChatMessage(role="user", content=prompt)]
                d = stub.Route(pb.RouteRequest(model="budget", messages=msgs), metadata=AUTH).decision
                thresholds = tuple(t.threshold for t in d.tier_scores)
                which = next(i for i, p in around.items() if np.allclose(p.thresholds(rule), thresholds))
                drawn[which] += 1
                # the tier the lab's fit expected at that point for this prompt is the one the gateway chose
                assert d.tier_name == config.tiers.names[int(_chosen(points[which], scores[j : j + 1], cost)[0])]
                realised.append(cost[config.tiers[d.tier_name].index])
    n = len(realised)
    w = (TARGET - points[low].cost) / (points[low + 1].cost - points[low].cost)
    assert drawn[low] and drawn[low + 1]  # both neighbours drawn, in about the mixing weight
    assert abs(drawn[low + 1] / n - w) <= 4 * math.sqrt(w * (1 - w) / n)
    # the realised mean cost share meets the target within the draw's noise (4 standard deviations: each request
    # draws the costlier point with probability w, which moves its cost by that point's minus the cheaper one's)
    gap = cost[_chosen(points[low + 1], scores, cost)] - cost[_chosen(points[low], scores, cost)]
    sd = math.sqrt(w * (1 - w) * ROUNDS * float((gap**2).sum())) / n
    assert abs(float(np.mean(realised)) - TARGET) <= 4 * sd + 1e-9, (np.mean(realised), TARGET, sd)


def _chosen(point: OperatingPoint, scores: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """The tiers the lab's hull point (``lab.eval.tier_metrics.HullPoint``) picks for these scores."""
    return HullPoint(point.cost, 0.0, threshold=point.threshold, tier=point.tier).chosen(scores, cost, "cost_aware")


def test_a_tier_the_router_does_not_know_or_a_target_outside_the_points_is_refused(
    fakes, scorer_address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = three_tier_dict(
        fakes, scorer_target=f"dns:///{scorer_address}", policies={"budget": {"router": "mf", "threshold": 0.5}}
    )
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(data), encoding="utf-8")
    graded = _graded(tmp_path / "graded.jsonl", _scores(scorer_address, load_config(config_path).tiers.pairs()))
    base = ["calibrate", "points", "--policy", "budget", "--graded", str(graded), "--scorer", scorer_address]
    # a target below the cheapest point: the table and block are printed, then why the block does not load
    assert main([*base, "--config", str(config_path), "--cost-share", "0.005", "--quiet", "--bootstrap", "0"]) == 2
    printed = capsys.readouterr()
    assert "operating_points:" in printed.out
    assert printed.err.startswith(
        "ferryman calibrate points: the block does not load with this configuration: policies.budget.cost_share: "
        "0.005 is outside the operating points' costs (0.01 to 1)"
    )
    # a tier standing for a model the router was not trained on: nothing fitted
    data["tiers"][1]["router_model"] = "some-model-mf-never-saw"
    config_path.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert main([*base, "--config", str(config_path), "--quiet"]) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err.startswith(
        "ferryman calibrate points: router 'mf' does not know some-model-mf-never-saw (it knows"
    )
