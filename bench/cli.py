"""``ferryman bench NAME [options]``: run one benchmark; each prints its ratios side by side.

Benchmarks are modules exposing ``add_arguments(parser)`` and ``run(args) -> int``,
imported only when chosen (add an entry to ``BENCHMARKS``).
"""

from __future__ import annotations

import argparse
import importlib
from typing import Protocol, cast

# name -> (module, one-line help)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "scorer": ("bench.scorer", "Score RPC throughput at concurrency 1/8/64 vs raw onnxruntime and torch eager"),
    "encoder": ("bench.encoder", "encoder graphs: current int8 vs fused int8/fp32 speed, fidelity, batch-mate drift"),
    "gateway": (
        "bench.gateway",
        "gateway overhead: direct vs through-the-gateway latency, p50/p99 at concurrency 1 and 32",
    ),
    "learning": (
        "bench.learning",
        "client latency with shadow sampling (20 %) on vs off, side by side with an identical off twin (noise floor)",
    ),
}


class _Benchmark(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def add_arguments(parser: argparse.ArgumentParser) -> None:
    lines = "\n".join(f"  {name:<10} {text}" for name, (_, text) in BENCHMARKS.items())
    parser.epilog = f"benchmarks:\n{lines}\n\nRun `ferryman bench NAME --help` for a benchmark's options."
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS), metavar="NAME", help="benchmark to run")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="options of the benchmark")


def run(args: argparse.Namespace) -> int:
    module_name, text = BENCHMARKS[args.benchmark]
    module = cast(_Benchmark, importlib.import_module(module_name))
    parser = argparse.ArgumentParser(
        prog=f"ferryman bench {args.benchmark}",
        description=text,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(args.options)) or 0)
