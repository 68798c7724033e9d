"""``ferryman bench NAME [options]``: run one benchmark; each prints its ratios side by side.

Benchmarks are modules exposing ``add_arguments(parser)`` and ``run(args) -> int``,
imported only when chosen (add an entry to ``BENCHMARKS``).
"""

from __future__ import annotations

import argparse

from ferryman import subcommands

# name -> (module, one-line help)
BENCHMARKS: subcommands.Table = {
    "scorer": ("bench.scorer", "Score RPC throughput at concurrency 1/8/64 vs raw onnxruntime and torch eager"),
    "encoder": ("bench.encoder", "encoder graphs: current int8 vs fused int8/fp32 speed, fidelity, batch-mate drift"),
    "gateway": (
        "bench.gateway",
        "gateway overhead: direct vs through-the-gateway latency, p50/p99 at concurrency 1 and 32",
    ),
    "steady": (
        "bench.steady",
        "gateway + real scorer at a steady rate, realistic lengths, a 1,024-prompt BatchScore and a 3M-message Score"
        " mid-run: fallback share, others' p99 vs the deadline",
    ),
    "faults": (
        "bench.faults",
        "gateway under a provider failing 20 % / 90 % of calls: breaker, fallbacks, 0 lost, RSS and open files flat",
    ),
    "learning": (
        "bench.learning",
        "client latency with shadow sampling (20 %) on vs off, side by side with an identical off twin (noise floor)",
    ),
    "long-context": (
        "bench.long_context",
        "the length head's clamp on the mix's long-context prompts: win rates no head / unclamped / clamped, and how"
        " many go strong at the calibrated 10 % / 30 % thresholds",
    ),
    "worker-restart": (
        "bench.worker_restart",
        "the serving loop's longest stall while the learning worker restarts, beside Process.start's own time",
    ),
    "learning-loop": (
        "bench.learning_loop",
        "the learning loop end to end: shadowing, export, retrain, promote and roll back under load (0 failed calls)",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subcommands.add_arguments(parser, BENCHMARKS, "benchmark")


def run(args: argparse.Namespace) -> int:
    return subcommands.run(args, BENCHMARKS, "ferryman bench")
