"""Online calibration end to end: two gateway replicas, a real scorer, a real Redis, traffic that shifts.

Traffic: Route calls (no provider needed) with distinct prompts built from the test routers' topics,
alternating between two replicas. Phase one sends easy prompts (greetings, trivia, travel), phase two
hard ones (proofs, code, SQL, derivations), which the test MF router scores higher: with the
threshold phase one settled on, about half of phase two would go to the top tier instead of 30 %.
Each phase cycles through a pool of ``POOL`` prompts, shuffled anew every cycle; the realised top-tier
share is measured over each cycle (``POOL`` consecutive requests, both replicas together).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import grpc
import pytest

from ferryman.gateway.v1 import gateway_pb2 as pb
from ferryman.gateway.v1 import gateway_pb2_grpc
from gateway.config import parse_config
from harness.gateway import CLIENT_KEY, GatewayThread, config_dict

AUTH = (("authorization", f"Bearer {CLIENT_KEY}"),)
POLICY, TARGET = "ferryman-balanced", 0.3
POOL = 100
EASY = (
    "say hello to my friend in Spanish",
    "what is the capital of Australia",
    "suggest a name for my new puppy",
    "write a short poem about autumn leaves",
    "plan a three-day trip to Rome on a budget",
)
HARD = (
    "prove this theorem about prime numbers",
    "write a Python function that merges two sorted lists",
    "debug this SQL query that joins three tables",
    "derive the gradient of the softmax cross-entropy loss",
)
FILLER = (
    "today",
    "please",
    "quickly",
    "carefully",
    "my",
    "friend",
    "said",
    "for",
    "work",
    "at",
    "home",
    "again",
    "now",
    "also",
    "maybe",
)
CALIBRATION = {
    "online": True,
    "window": 3 * POOL,
    "min_samples": POOL,
    "update_every": 10,
    "max_step": 0.05,
    "sync_s": 0.2,
    "redis_timeout_s": 0.2,
    "redis_retry_s": 1.0,
}


def pool(topics: tuple[str, ...], seed: int) -> list[str]:
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < POOL:
        words = " ".join(rng.sample(FILLER, 3))
        out.add(f"{words.capitalize()}, {rng.choice(topics)} ({rng.randint(1, 999)}).")
    return sorted(out)


@dataclass
class Run:
    """Decisions in send order: (top tier?, source) and errors."""

    top: list[bool] = field(default_factory=list)
    sources: list[int] = field(default_factory=list)
    errors: int = 0

    def cycle_shares(self, start: int) -> list[float]:
        """Realised top-tier share of each full cycle of ``POOL`` requests from ``start``."""
        n = (len(self.top) - start) // POOL
        return [sum(self.top[start + i * POOL : start + (i + 1) * POOL]) / POOL for i in range(n)]


def drive(replicas: list[GatewayThread], prompts: list[str], cycles: int, run: Run, seed: int) -> None:
    rng = random.Random(seed)
    channels = [grpc.insecure_channel(r.grpc_target) for r in replicas]
    stubs = [gateway_pb2_grpc.GatewayServiceStub(c) for c in channels]
    try:
        for _ in range(cycles):
            order = prompts[:]
            rng.shuffle(order)
            for prompt in order:
                stub = stubs[len(run.top) % len(stubs)]
                try:
                    d = stub.Route(
                        pb.RouteRequest(model=POLICY, messages=[pb.ChatMessage(role="user", content=prompt)]),
                        metadata=AUTH,
                        timeout=10,
                    ).decision
                except grpc.RpcError:
                    run.errors += 1
                    run.top.append(False)
                    run.sources.append(-1)
                    continue
                run.top.append(d.tier_name == "strong")
                run.sources.append(d.threshold_source)
    finally:
        for c in channels:
            c.close()


def replicas_config(fakes, scorer_address):
    data = config_dict(
        fakes,
        scorer_target=f"dns:///{scorer_address}",
        calibration=CALIBRATION,
        policies={POLICY: {"router": "mf", "strong_share": TARGET}},
    )
    return parse_config(data)


def first_settled_cycle(shares: list[float], tolerance: float = 0.03) -> int | None:
    """The first cycle from which every later cycle's share is within ``tolerance`` of the target."""
    for i in range(len(shares)):
        if all(abs(s - TARGET) <= tolerance for s in shares[i:]):
            return i
    return None


def test_two_replicas_sharing_redis_track_the_target_through_a_shift(fakes, scorer_address, redis_server):
    config = replicas_config(fakes, scorer_address)
    easy, hard = pool(EASY, 1), pool(HARD, 2)
    run = Run()
    with GatewayThread(config, redis_url=redis_server.url) as a, GatewayThread(config, redis_url=redis_server.url) as b:
        drive([a, b], easy, 5, run, seed=3)
        switch = len(run.top)
        before = run.cycle_shares(switch - 2 * POOL)
        drive([a, b], hard, 9, run, seed=4)
        after = run.cycle_shares(switch)
        applied = [g.gateway.calibration.applied(POLICY, "mf") for g in (a, b)]
    print(f"\nrealised top-tier share per cycle of {POOL}: easy (last two) {before}, after the switch {after}")
    assert run.errors == 0
    assert all(abs(s - TARGET) <= 0.03 for s in before), before
    assert pb.THRESHOLD_SOURCE_ARTIFACT in run.sources[:POOL] and run.sources[-1] == pb.THRESHOLD_SOURCE_ONLINE
    assert max(after[:2]) > TARGET + 0.05, "the shift must move the realised share before calibration catches up"
    settled = first_settled_cycle(after)
    print(f"back within ±3 points from cycle {settled} after the switch, i.e. within {(settled or 0) * POOL} requests")
    assert settled is not None and settled * POOL <= 500, after
    # both replicas calibrate on the shared window (all traffic) and apply the same thresholds
    (ta, shared_a, size_a), (tb, shared_b, size_b) = applied
    assert shared_a and shared_b and size_a == size_b == 3 * POOL
    assert ta is not None and tb is not None and abs(ta[0] - tb[0]) < 0.02


def test_redis_gone_each_replica_calibrates_on_its_own(fakes, scorer_address, redis_server):
    config = replicas_config(fakes, scorer_address)
    easy, hard = pool(EASY, 5), pool(HARD, 6)
    run = Run()
    with GatewayThread(config, redis_url=redis_server.url) as a, GatewayThread(config, redis_url=redis_server.url) as b:
        drive([a, b], easy, 4, run, seed=7)
        redis_server.stop()
        time.sleep(0.5)
        switch = len(run.top)
        drive([a, b], hard, 9, run, seed=8)
        after = run.cycle_shares(switch)
        states = [g.gateway.calibration.applied(POLICY, "mf") for g in (a, b)]
        own = [g.gateway.calibration.realised_shares(POLICY, "mf") for g in (a, b)]
        errors = [g.gateway.calibration.metrics.redis_errors._value.get() for g in (a, b)]
    print(f"\nRedis gone: realised top-tier share per cycle after the switch {after}; per replica {own}")
    assert run.errors == 0
    assert all(not shared for _, shared, _ in states)
    assert all(e >= 1 for e in errors)
    # each replica's window now fills with half the traffic: twice as many requests to turn it over
    settled = first_settled_cycle(after)
    print(f"back within ±3 points from cycle {settled} after the switch, i.e. within {(settled or 0) * POOL} requests")
    assert settled is not None and settled * POOL <= 800, after


@pytest.mark.parametrize("shares", [{"weak": 0.7, "strong": 0.3}])
def test_tier_shares_policy_with_two_tiers_matches_strong_share(fakes, scorer_address, shares):
    """tier_shares on two tiers is strong_share: the same realised split after warm-up (one replica)."""
    data = config_dict(
        fakes,
        scorer_target=f"dns:///{scorer_address}",
        calibration=CALIBRATION,
        policies={POLICY: {"router": "mf", "tier_shares": shares}},
    )
    run = Run()
    with GatewayThread(parse_config(data)) as g:
        drive([g], pool(HARD, 9), 4, run, seed=1)
    assert run.errors == 0
    assert all(abs(s - 0.3) <= 0.03 for s in run.cycle_shares(2 * POOL))


@pytest.mark.parametrize(
    ("rule", "policy", "target"),
    [
        ("cheapest", {"tier_shares": {"small": 0.5, "medium": 0.3, "large": 0.2}}, None),
        ("cost_aware", {"cost_share": 0.25}, 0.25),
        ("cheapest", {"cost_share": 0.25}, 0.25),
        ("cost_aware", {"strong_share": 0.2}, None),
    ],
)
def test_three_tier_share_and_cost_targets(fakes, scorer_address, rule, policy, target):
    """tier_shares, cost_share and strong_share policies with three tiers reach their targets on live traffic."""
    from harness.tiers import three_tier_dict

    data = three_tier_dict(
        fakes,
        scorer_target=f"dns:///{scorer_address}",
        calibration=CALIBRATION,
        policies={"p": {"router": "mf"} | policy},
    )
    data["routing"] = {"tier_rule": rule}
    prompts = pool(HARD, 11)
    chosen: list[str] = []
    with GatewayThread(parse_config(data)) as g, grpc.insecure_channel(g.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        for cycle in range(4):
            order = prompts[:]
            random.Random(cycle).shuffle(order)
            for prompt in order:
                d = stub.Route(
                    pb.RouteRequest(model="p", messages=[pb.ChatMessage(role="user", content=prompt)]), metadata=AUTH
                ).decision
                chosen.append(d.tier_name)
        weights = g.gateway.config.policies["p"].cost_weights
    last = chosen[-2 * POOL :]
    shares = {t: last.count(t) / len(last) for t in ("small", "medium", "large")}
    cost = sum(weights[("small", "medium", "large").index(t)] for t in last) / len(last)
    print(f"\n{rule} {policy}: realised shares {shares}, cost {cost:.3f}")
    if "tier_shares" in policy:
        assert shares == pytest.approx(policy["tier_shares"], abs=0.03)
    elif "strong_share" in policy:
        assert shares["large"] == pytest.approx(policy["strong_share"], abs=0.03)
    else:
        assert target is not None and target - 0.03 <= cost <= target + 0.01
