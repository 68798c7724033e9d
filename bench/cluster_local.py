"""Local multi-replica run: the stand-in for a Kubernetes cluster on a machine without one.

The cluster (:class:`harness.cluster.LocalCluster`): a fake LLM provider (real HTTP, slow enough
that requests are in flight at any moment), a redis-server for shared breaker state (as the dev
overlay), N scorer processes and M gateway processes on loopback. A bounded load of
``ChatCompletion`` calls is spread over the gateways (as a Service would), in three phases:

1. steady: every scorer receives a share of the Score calls (counted from each scorer's
   Prometheus metrics);
2. one scorer is killed (SIGKILL) mid-load: no client request may fail; requests whose score
   was lost are counted (decision source SCORER_UNAVAILABLE: the policy's default tier served);
3. one gateway is taken out of rotation (its endpoint removed) and sent SIGTERM while requests
   are in flight on it: every one of them must complete.

``make cluster-local`` (``python -m bench.cluster_local``) prints the counts and exits non-zero
when a requirement fails. ``tests/deploy`` runs a short version.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from ferryman import paths
from ferryman.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from harness.cluster import CLIENT_KEY, LocalCluster

PROMPTS = (
    "What is the capital of France?",
    "Prove that there are infinitely many primes.",
    "Write a haiku about autumn leaves.",
    "Explain how TCP congestion control reacts to packet loss.",
    "Translate 'good morning' into Spanish.",
    "Derive the closed form of the sum of the first n squares.",
    "Give three tips for a job interview.",
    "Implement an LRU cache in Python with O(1) operations and explain the design.",
)
SCORED = gateway_pb2.DecisionSource.Name(gateway_pb2.DECISION_SOURCE_SCORED)
SCORER_DOWN = gateway_pb2.DecisionSource.Name(gateway_pb2.DECISION_SOURCE_SCORER_UNAVAILABLE)


# ---------------------------------------------------------------------------------- load


@dataclass
class Outcome:
    """One client request: which gateway, in which phase, and how it ended."""

    gateway: int
    phase: str
    code: str  # "OK" or the gRPC status name
    source: str = ""  # decision source of a successful answer


@dataclass
class Load:
    """Steady, bounded ChatCompletion load spread round-robin over the gateways in rotation."""

    targets: list[str]
    concurrency: int = 8
    max_requests: int = 100_000
    timeout_s: float = 30.0
    phase: str = "steady"
    rotation: list[int] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    in_flight: dict[int, set[int]] = field(default_factory=dict)
    results: dict[int, Outcome] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rotation = list(range(len(self.targets)))
        self.in_flight = {g: set() for g in self.rotation}
        self._ids = itertools.count()
        self._next = itertools.count()

    async def run(self, until: asyncio.Event) -> None:
        channels = [grpc.aio.insecure_channel(t) for t in self.targets]
        stubs = [gateway_pb2_grpc.GatewayServiceStub(c) for c in channels]
        try:
            await asyncio.gather(*(self._worker(w, stubs, until) for w in range(self.concurrency)))
        finally:
            for channel in channels:
                await channel.close()

    async def _worker(
        self, worker: int, stubs: list[gateway_pb2_grpc.GatewayServiceStub], until: asyncio.Event
    ) -> None:
        metadata = (("authorization", f"Bearer {CLIENT_KEY}"),)
        while not until.is_set():
            request_id = next(self._ids)
            if request_id >= self.max_requests:
                return
            gw = self.rotation[next(self._next) % len(self.rotation)]
            prompt = PROMPTS[request_id % len(PROMPTS)]
            request = gateway_pb2.ChatCompletionRequest(
                model="ferryman-balanced", messages=[gateway_pb2.ChatMessage(role="user", content=prompt)]
            )
            phase = self.phase
            self.in_flight[gw].add(request_id)
            try:
                reply = await stubs[gw].ChatCompletion(request, timeout=self.timeout_s, metadata=metadata)
                outcome = Outcome(gw, phase, "OK", gateway_pb2.DecisionSource.Name(reply.decision.source))
            except grpc.aio.AioRpcError as exc:
                outcome = Outcome(gw, phase, exc.code().name)
            finally:
                self.in_flight[gw].discard(request_id)
            self.outcomes.append(outcome)
            self.results[request_id] = outcome


# --------------------------------------------------------------------------------- phases


@dataclass
class Report:
    """What the run measured."""

    score_calls_steady: list[int | None]
    score_calls_end: list[int | None]
    phases: dict[str, Counter[str]]
    per_gateway: Counter[int]
    failed: int
    lost_scores_after_kill: int
    #: Score RPC failures the gateways counted while the steady phase / the kill phase ran, by code.
    scorer_failures_steady: Counter[str]
    scorer_failures_after_kill: Counter[str]
    in_flight_at_sigterm: int
    in_flight_completed: int
    in_flight_failed: int
    sigterm_exit_code: int | None
    sigterm_exit_s: float

    @property
    def passed(self) -> bool:
        steady = self.score_calls_steady
        return (
            self.failed == 0
            and all(n is not None and n > 0 for n in steady)
            and self.in_flight_at_sigterm > 0
            and self.in_flight_completed == self.in_flight_at_sigterm
            and self.sigterm_exit_code == 0
        )


async def _exercise(
    cluster: LocalCluster, load: Load, steady_s: float, after_kill_s: float, after_term_s: float
) -> Report:
    stop = asyncio.Event()
    failures_start = await asyncio.to_thread(cluster.gateway_scorer_failures)
    runner = asyncio.create_task(load.run(stop))
    await asyncio.sleep(steady_s)
    steady_calls = await asyncio.to_thread(cluster.score_calls)
    failures_steady = await asyncio.to_thread(cluster.gateway_scorer_failures)

    victim = cluster.scorer_procs[-1]
    load.phase = f"{victim.name} killed"
    victim.signal(signal.SIGKILL)
    await asyncio.sleep(after_kill_s)
    failures_kill = await asyncio.to_thread(cluster.gateway_scorer_failures)

    gw_index = len(cluster.gateway_procs) - 1
    gw = cluster.gateway_procs[gw_index]
    load.phase = f"{gw.name} SIGTERM"
    load.rotation.remove(gw_index)  # as the endpoints controller removes a terminating pod
    # Let the requests just handed to it reach it (the cluster's preStop sleep, much shortened);
    # with the provider's latency many are still being served when SIGTERM arrives.
    await asyncio.sleep(0.02)
    draining = set(load.in_flight[gw_index])
    sent = time.monotonic()
    gw.signal(signal.SIGTERM)
    exit_code = await asyncio.to_thread(_wait_exit, gw.proc, 30.0)
    exit_s = time.monotonic() - sent
    await asyncio.sleep(max(0.0, after_term_s - exit_s))
    stop.set()
    await runner

    end_calls = await asyncio.to_thread(cluster.score_calls)
    phases: dict[str, Counter[str]] = {}
    for o in load.outcomes:
        phases.setdefault(o.phase, Counter())[o.source if o.code == "OK" else f"FAILED {o.code}"] += 1
    drained = [load.results[i] for i in draining if i in load.results]
    killed_phase = phases.get(f"{victim.name} killed", Counter())
    return Report(
        score_calls_steady=steady_calls,
        score_calls_end=end_calls,
        phases=phases,
        per_gateway=Counter(o.gateway for o in load.outcomes),
        failed=sum(1 for o in load.outcomes if o.code != "OK"),
        lost_scores_after_kill=killed_phase[SCORER_DOWN],
        scorer_failures_steady=failures_steady - failures_start,
        scorer_failures_after_kill=failures_kill - failures_steady,
        in_flight_at_sigterm=len(draining),
        in_flight_completed=sum(1 for o in drained if o.code == "OK"),
        in_flight_failed=sum(1 for o in drained if o.code != "OK"),
        sigterm_exit_code=exit_code,
        sigterm_exit_s=exit_s,
    )


def _wait_exit(proc: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        return None


def exercise(
    cluster: LocalCluster, *, concurrency: int, steady_s: float, after_kill_s: float, after_term_s: float
) -> Report:
    """Run the three phases against a started cluster (2+ scorers, 2+ gateways)."""
    if len(cluster.scorer_procs) < 2 or len(cluster.gateway_procs) < 2:
        raise ValueError("the multi-replica run needs at least two scorers and two gateways")
    load = Load([p.target for p in cluster.gateway_procs], concurrency=concurrency)
    return asyncio.run(_exercise(cluster, load, steady_s, after_kill_s, after_term_s))


def format_report(cluster: LocalCluster, report: Report) -> str:
    lines = ["Score calls per scorer replica (from each scorer's /metrics):"]
    for i, p in enumerate(cluster.scorer_procs):
        end = report.score_calls_end[i]
        lines.append(
            f"  {p.name} (:{p.grpc_port})  after the steady phase: {report.score_calls_steady[i]}"
            f"   at the end: {'down' if end is None else end}"
        )
    lines.append("Client requests (ChatCompletion through the gateways) by phase and decision source:")
    for phase, counts in report.phases.items():
        detail = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        lines.append(f"  {phase:<22} total={sum(counts.values()):<5} {detail}")
    spread = ", ".join(f"{cluster.gateway_procs[g].name}={n}" for g, n in sorted(report.per_gateway.items()))
    lines.append(f"Client requests per gateway: {spread}")
    lines.append(f"Failed client requests, all phases: {report.failed}")
    lines.append(
        f"Requests that lost their score after the scorer kill (served by the default tier): "
        f"{report.lost_scores_after_kill}"
    )
    for phase, failures in (("steady", report.scorer_failures_steady), ("kill", report.scorer_failures_after_kill)):
        detail = ", ".join(f"{k.removeprefix('code=')}={v}" for k, v in sorted(failures.items())) or "none"
        lines.append(f"  Score RPC failures seen by the gateways, {phase} phase: {detail}")
    lines.append(
        f"Gateway SIGTERM: in flight at SIGTERM={report.in_flight_at_sigterm}, completed OK="
        f"{report.in_flight_completed}, failed={report.in_flight_failed}; exit code "
        f"{report.sigterm_exit_code} after {report.sigterm_exit_s:.2f} s"
    )
    lines.append("PASS" if report.passed else "FAIL")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster_local",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--routers-dir",
        type=Path,
        default=paths.routers_dir(),
        help="router artifacts to serve; small test routers are built when it holds none",
    )
    parser.add_argument("--encoder-dir", type=Path, default=paths.encoder_dir(), help="ONNX encoder")
    parser.add_argument("--concurrency", type=int, default=8, help="client requests in flight")
    parser.add_argument("--steady-s", type=float, default=15.0, help="load with every replica up")
    parser.add_argument("--after-kill-s", type=float, default=10.0, help="load after one scorer is killed")
    parser.add_argument("--after-term-s", type=float, default=5.0, help="load after one gateway's SIGTERM")
    parser.add_argument("--provider-delay-s", type=float, default=0.2, help="fake provider latency")
    parser.add_argument("--scorer-deadline-ms", type=float, help="override scorer.deadline_ms of the config")
    args = parser.parse_args(argv)
    overrides = {"deadline_ms": args.scorer_deadline_ms} if args.scorer_deadline_ms else {}
    with tempfile.TemporaryDirectory(prefix="ferryman-cluster-") as tmp:
        routers_dir = args.routers_dir
        if not any(routers_dir.glob("*/manifest.json")):
            from harness.scorer import build_test_routers

            routers_dir = build_test_routers(Path(tmp) / "routers", encoder_dir=args.encoder_dir)
            print(f"no router artifacts in {args.routers_dir}: serving small test routers", flush=True)
        return _run(args, routers_dir, overrides)


def _run(args: argparse.Namespace, routers_dir: Path, overrides: dict[str, Any]) -> int:
    cluster = LocalCluster(
        routers_dir=routers_dir,
        encoder_dir=args.encoder_dir,
        provider_delay_s=args.provider_delay_s,
        scorer_overrides=overrides,
    )
    with cluster:
        print(f"started: {len(cluster.scorer_procs)} scorers, {len(cluster.gateway_procs)} gateways", flush=True)
        report = exercise(
            cluster,
            concurrency=args.concurrency,
            steady_s=args.steady_s,
            after_kill_s=args.after_kill_s,
            after_term_s=args.after_term_s,
        )
        print(format_report(cluster, report), flush=True)
    return 0 if report.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
