"""``ferryman bench scorer``: Score RPC cost by prompt length and throughput, vs raw onnxruntime, in one run.

Prompts: the realistic mix of ``bench.prompts`` (whole Arena prompts plus 25 % long-context
prompts, stated in the first line of output), or ``--prompts FILE``. Everything runs on this machine:

0. ``server time by prompt length`` (``bench.lengths``, routers ``--length-routers``, default mf, sw,
   bert): every prompt scored one call at a time, the server's own time grouped by token-length
   bucket (<= 32, 33-128, 129-256, 257-2k, > 2k tokens), beside raw onnxruntime on the same
   prompts cut to the router's window and, with ``--baseline-dir``, the baseline scorer called
   prompt by prompt in alternation, with the largest change of any win rate between the two.

Then, unless ``--skip-throughput``, the throughput measures:

1. ``raw batched`` (the ceiling): pre-tokenized batches of ``--max-batch`` prompts padded to
   their longest, ``session.run`` only (no tokenizer, no gRPC), in the layouts the server
   could use on these cores (``W`` threads x 1 intra-op thread, and 1 thread x ``W`` intra-op
   threads); the best is the ceiling. ``raw per-sequence`` is the same without padding
   (one sequence per run, what the server does by default).
2. ``raw batch-1 latency``: one pre-tokenized prompt per ``session.run``, one at a time, with the
   server's session settings (``scorer.encoder.make_session``, 1 intra-op thread) and the same prompts.
   ``core batch-1`` is the server's scoring function (``ScorerCore.score_prepared``: tokenize, the
   same ONNX run, the router's head) in this process, one prompt at a time: the gap between the
   two is tokenization and the router; the gap between it and the Score RPC at concurrency 1 is
   serving (gRPC both ways, the hand-off to a worker thread) plus the cost of caches and idle
   cores waking up after each encoder run, which a back-to-back loop never pays.
3. ``Score RPC``: ``ferryman scorer`` in a subprocess on loopback; this process's grpc.aio
   client keeps 1, 8 and 64 unary Score calls in flight for ``--seconds`` each. The client
   shares the CPUs with the server, as a co-located caller would.
4. ``torch eager``: how RouteLLM serves: transformers ``AutoModel`` + mean pooling, one
   request at a time (tokenize, forward, pool), torch using every core.

Then the ratios against the targets (conc-64 >= 0.8x ceiling, >= 5x torch one-at-a-time,
p50 at concurrency 1 <= raw batch-1 p50 + 1 ms). On CPU the padded "raw batched" ceiling is
below one sequence per run, so conc-64 is also divided by the best raw mode (the faster of the
two), the honest reading of "close to the raw ceiling". torch is imported only in phase 4.

``--baseline-dir DIR`` also starts a scorer from another revision's packages (``git archive REV
scorer ferryman gateway | tar -x -C DIR``) and interleaves its Score calls with this checkout's,
printing before/after side by side (the length table and every concurrency level).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bench import lengths
from bench.lengths import token_counts
from bench.prompts import describe_mix, first_turns, length_bucket, prompt_mix
from ferryman import paths
from scorer.encoder import Batch, Encoder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=9.0, help="measured time per measure (all rounds)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds the time is split into")
    parser.add_argument("--router", default="mf", help="router the Score calls use (mf or sw share the encoder)")
    parser.add_argument(
        "--routers-dir", type=Path, help="router artifacts (default: ./routers if present, else small test routers)"
    )
    parser.add_argument("--encoder-dir", type=Path, default=paths.encoder_dir(), help="ONNX encoder")
    parser.add_argument("--encoder-precision", choices=["int8", "fp32"], default="int8", help="encoder graph")
    parser.add_argument("--workers", type=int, default=2, help="server inference threads (and raw threads)")
    parser.add_argument("--max-batch", type=int, default=64, help="server max batch = raw ceiling batch size")
    parser.add_argument("--concurrency", default="1,8,64", help="client concurrency levels")
    parser.add_argument(
        "--prompts", type=Path, help="JSONL with a 'turns' list per line, instead of the default mix (bench.prompts)"
    )
    parser.add_argument(
        "--data-dir", type=Path, help="public data for the mix (default $FERRYMAN_DATA or ../shared/data)"
    )
    parser.add_argument("--mix-size", type=int, default=400, help="prompts in the mix")
    parser.add_argument("--long-share", type=float, default=0.25, help="share of long-context prompts in the mix")
    parser.add_argument(
        "--length-routers",
        default="mf,sw,bert",
        help="routers of the server-time-by-length table (comma-separated; empty: no table)",
    )
    parser.add_argument("--skip-throughput", action="store_true", help="only the length table (no concurrency runs)")
    parser.add_argument(
        "--windows",
        default="",
        help="also time the length routers at these encoder windows, e.g. 128,256 (variants <router>-w<N>: the "
        "same weights at another window; cost only, their scores are not the shipped routers')",
    )
    parser.add_argument("--skip-torch", action="store_true", help="skip the torch eager baseline")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--baseline-dir",
        type=Path,
        help="a second scorer to compare with, run from this directory (e.g. `git archive REV scorer ferryman "
        "gateway | tar -x -C DIR`): its Score calls are interleaved with this checkout's, side by side",
    )
    parser.add_argument(
        "--baseline-routers-dir",
        type=Path,
        help="router artifacts the baseline scorer loads (default: the same as this checkout's); for a baseline "
        "that refuses today's manifests (e.g. format_version 2, a length head), a copy it can read: its costs "
        "are comparable, its win rates are not (the table's max |delta| then measures the difference)",
    )


def load_prompts(args: argparse.Namespace) -> tuple[list[str], str]:
    """The benchmark's prompts and a line saying what they are.

    ``--prompts FILE``: first turns of a JSONL file; else the realistic mix (``bench.prompts``); else,
    without the public data, generated prompts of mixed length.
    """
    if args.prompts is not None:
        prompts = first_turns(args.prompts)
        return prompts, f"{len(prompts)} prompts from {args.prompts}"
    from lab.data.benchmarks import DataError, default_data_dir

    try:
        data_dir = args.data_dir or default_data_dir()
    except DataError:
        from harness.scorer import SAMPLE_PROMPTS

        prompts = [" ".join([p] * (1 + i % 7)) for i, p in enumerate(SAMPLE_PROMPTS * 6)]
        return prompts, f"{len(prompts)} generated prompts (no public data found)"
    mix = prompt_mix(data_dir, args.mix_size, long_share=args.long_share)
    texts = [p.text for p in mix]
    return texts, "mix of " + describe_mix(mix, token_counts(args.encoder_dir, texts))


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


class Tally:
    """Items, seconds and per-item latencies of one measure, summed over rounds."""

    def __init__(self) -> None:
        self.items = 0
        self.seconds = 0.0
        self.latencies: list[float] = []

    def add(self, items: int, seconds: float, latencies: Sequence[float] = ()) -> None:
        self.items += items
        self.seconds += seconds
        self.latencies.extend(latencies)

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds else float("nan")


def _timed_threads(threads: int, seconds: float, work: Callable[[int], int], tally: Tally) -> None:
    """Run ``work(i)`` (returns items done) in ``threads`` threads for ``seconds``; adds to ``tally``."""
    counter = itertools.count()
    done = [0] * threads
    lat: list[list[float]] = [[] for _ in range(threads)]
    end = time.perf_counter() + seconds

    def loop(t: int) -> None:
        while time.perf_counter() < end:
            start = time.perf_counter()
            done[t] += work(next(counter))
            lat[t].append(time.perf_counter() - start)

    start = time.perf_counter()
    pool = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    tally.add(sum(done), time.perf_counter() - start, [x for part in lat for x in part])


def raw_phases(args: argparse.Namespace, prompts: list[str]) -> dict[str, Callable[[float, Tally], None]]:
    """Raw onnxruntime measures: batched (both thread layouts), per-sequence, batch-1 latency."""
    phases: dict[str, Callable[[float, Tally], None]] = {}
    for intra, threads in ((1, args.workers), (args.workers, 1)):
        enc = Encoder(args.encoder_dir, precision=args.encoder_precision, threads=intra)
        seqs = enc.tokenizer.ids(prompts)
        n, size = len(seqs), args.max_batch
        batched = [enc.tokenizer.pad([seqs[(s + j) % n] for j in range(size)]) for s in range(0, n, size)]
        singles = [enc.tokenizer.pad([s]) for s in seqs]
        enc.run(batched[0])
        layout = f"{threads}x{intra}"
        phases[f"raw batched {layout}"] = _runner(enc, batched, threads)
        phases[f"raw per-sequence {layout}"] = _runner(enc, singles, threads)
    # Latency of one sequence per run, one run at a time, with the server's 1 intra-op thread.
    enc = Encoder(args.encoder_dir, precision=args.encoder_precision, threads=1)
    phases["raw batch-1"] = _runner(enc, [enc.tokenizer.pad([s]) for s in enc.tokenizer.ids(prompts)], 1)
    return phases


def core_phase(routers_dir: Path, args: argparse.Namespace, prompts: list[str]) -> Callable[[float, Tally], None]:
    """The server's scoring function in this process, one prompt at a time (no gRPC, no worker thread)."""
    from scorer.core import ScoreQuery, ScorerCore

    core = ScorerCore.load(
        routers_dir, args.encoder_dir, precision=args.encoder_precision, threads=1, only=[args.router]
    )
    items = [core.prepare(ScoreQuery(router=args.router, prompt=p)) for p in prompts]
    core.score_prepared(items[:1])

    def phase(seconds: float, tally: Tally) -> None:
        _timed_threads(1, seconds, lambda i: len(core.score_prepared([items[i % len(items)]])), tally)

    return phase


def _runner(enc: Encoder, batches: Sequence[Batch], threads: int) -> Callable[[float, Tally], None]:
    def phase(seconds: float, tally: Tally) -> None:
        _timed_threads(threads, seconds, lambda i: enc.run(batches[i % len(batches)]).shape[0], tally)

    return phase


def start_server(
    args: argparse.Namespace, routers_dir: Path, routers: Sequence[str], cwd: Path | None = None
) -> tuple[subprocess.Popen[str], str]:
    """``ferryman scorer`` on a free loopback port (from ``cwd``'s packages when given); returns it and its address.

    Its announcements are log lines (stderr; stdout in older checkouts, e.g. a baseline): both are read until
    "serving routers", then drained in a thread so that a log line never blocks the server on a full pipe."""
    argv = [sys.executable, "-m", "ferryman", "scorer", "--routers-dir", str(routers_dir.resolve())]
    argv += ["--routers", ",".join(routers)]
    argv += ["--encoder-dir", str(args.encoder_dir.resolve()), "--encoder-precision", args.encoder_precision]
    argv += ["--host", "127.0.0.1", "--port", "0", "--metrics-port", "0"]
    argv += ["--workers", str(args.workers), "--max-batch", str(args.max_batch)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd)
    assert proc.stdout is not None
    address = ""
    for line in proc.stdout:
        if m := re.search(r"listening on (\S+):(\d+)", line):
            address = f"127.0.0.1:{m.group(2)}"
        if "serving routers" in line:
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, address
    raise RuntimeError(f"scorer did not start (exit code {proc.wait()})")


async def rpc_load(
    address: str, router: str, prompts: list[str], concurrency: int, seconds: float, tally: Tally
) -> None:
    """Keep ``concurrency`` unary Score calls in flight for ``seconds`` (after a short warm-up)."""
    import grpc

    from ferryman.scorer.v1 import scorer_pb2 as pb
    from ferryman.scorer.v1 import scorer_pb2_grpc as pbg

    requests = [pb.ScoreRequest(router=router, prompt=p) for p in prompts]
    counter = itertools.count()
    lat: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pbg.ScorerServiceStub(channel)
        for r in requests[:4]:
            await stub.Score(r, timeout=30)
        end = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < end:
                req = requests[next(counter) % len(requests)]
                t = time.perf_counter()
                await stub.Score(req, timeout=60)
                lat.append(time.perf_counter() - t)

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        tally.add(len(lat), time.perf_counter() - start, lat)


def torch_phase(prompts: list[str]) -> Callable[[float, Tally], None]:
    """RouteLLM-style serving: one request at a time through transformers + torch eager, mean pooling."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from lab.train.export import base_model_path

    torch.set_num_threads(os.cpu_count() or 1)
    path = str(base_model_path())
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()

    def one(i: int) -> int:
        enc = tok(prompts[i % len(prompts)], truncation=True, max_length=256, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1)
        return int(emb.shape[0])

    one(0)
    return lambda seconds, tally: _timed_threads(1, seconds, one, tally)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    prompts, what = load_prompts(args)
    levels = [] if args.skip_throughput else [int(c) for c in args.concurrency.split(",") if c.strip()]
    length_routers = [r.strip() for r in args.length_routers.split(",") if r.strip()]
    print(
        f"scorer benchmark: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, {what}; router "
        f"{args.router}, encoder {args.encoder_precision}, workers {args.workers}, max batch {args.max_batch}, "
        f"{args.seconds:g} s per measure in {args.rounds} interleaved rounds",
        flush=True,
    )
    phases = raw_phases(args, prompts) if levels else {}
    with tempfile.TemporaryDirectory(prefix="ferryman-bench-scorer-") as tmp:
        routers_dir = args.routers_dir
        if routers_dir is None:
            routers_dir = paths.routers_dir()
            if not all((routers_dir / r / "manifest.json").is_file() for r in [args.router, *length_routers]):
                from harness.scorer import build_test_routers

                routers_dir = build_test_routers(Path(tmp) / "routers", encoder_dir=args.encoder_dir)
        print(f"Score RPC against `ferryman scorer` in a subprocess, routers from {routers_dir}", flush=True)
        if levels:
            phases["core batch-1"] = core_phase(routers_dir, args, prompts)
        # The random router does no inference: its latency at concurrency 1 is the serving overhead.
        overhead = bool(levels) and args.router != "random" and (routers_dir / "random" / "manifest.json").is_file()
        served = list(dict.fromkeys([args.router, *length_routers]))
        windows = [int(w) for w in args.windows.split(",") if w.strip()]
        variants: list[str] = []
        if windows:
            routers_dir = Path(tmp) / "with-windows"
            variants = lengths.window_variants(
                args.routers_dir or paths.routers_dir(), length_routers, windows, routers_dir
            )
        ours = [*served, *variants]
        proc, address = start_server(args, routers_dir, [*ours, "random"] if overhead else ours)
        servers = [("", address)]
        try:
            if args.baseline_dir is not None:
                base_routers = args.baseline_routers_dir or routers_dir
                base_proc, base_address = start_server(args, base_routers, served, cwd=args.baseline_dir)
                servers.append((" baseline", base_address))
            length_lines = []
            if length_routers:
                length_lines = length_table(
                    args, routers_dir, [*length_routers, *variants], prompts, dict(servers), variants
                )
            for c in levels:
                for suffix, addr in servers:
                    phases[f"rpc c{c}{suffix}"] = lambda sec, tally, c=c, addr=addr: asyncio.run(  # type: ignore[misc]
                        rpc_load(addr, args.router, prompts, c, sec, tally)
                    )
            if overhead:
                phases["rpc random c1"] = lambda sec, tally: asyncio.run(
                    rpc_load(address, "random", prompts, 1, sec, tally)
                )
            if levels and not args.skip_torch:
                phases["torch one-at-a-time"] = torch_phase(prompts)
            tallies = {name: Tally() for name in phases}
            # Rounds interleave every measure so that drift in machine load hits all of them alike.
            for r in range(args.rounds if phases else 0):
                for name, phase in phases.items():
                    phase(args.seconds / args.rounds, tallies[name])
                load = os.getloadavg()[0]
                print(f"  round {r + 1}/{args.rounds} done (load average {load:.2f})", flush=True)
        finally:
            proc.terminate()
            proc.wait(60)
            if len(servers) > 1:
                base_proc.terminate()
                base_proc.wait(60)
    results = summarise(tallies)
    if levels:
        print(report(results, levels, args))
    if length_lines:
        print("\nserver time by prompt length (Score, one call at a time; tokens of the whole prompt)")
        print("\n".join(length_lines))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def length_table(
    args: argparse.Namespace,
    routers_dir: Path,
    routers: Sequence[str],
    prompts: Sequence[str],
    servers: dict[str, str],
    variants: Sequence[str] = (),
) -> list[str]:
    """``bench.lengths``: per router, server time by length bucket, this vs baseline vs raw onnxruntime."""
    buckets = [length_bucket(n) for n in token_counts(args.encoder_dir, prompts)]
    raws = {r: lengths.raw_graph(routers_dir, r, args.encoder_dir, prompts) for r in routers}
    names = {"": "this", " baseline": "baseline"}
    samples = lengths.run_rounds(
        args.rounds, routers, prompts, buckets, {names[k]: v for k, v in servers.items()}, raws, set(variants)
    )
    lines: list[str] = []
    for r in routers:
        window = int(raws[r].label.rsplit(" ", 1)[-1])
        lines += ["", *lengths.report(r, window, samples["this"][r], samples.get("baseline", {}).get(r), raws[r])]
    return lines


def summarise(tallies: dict[str, Tally]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, t in tallies.items():
        out[f"{name} rps"] = t.rate
        out[f"{name} p50 ms"] = pct(t.latencies, 50) * 1e3
        out[f"{name} p99 ms"] = pct(t.latencies, 99) * 1e3
    return out


def report(r: dict[str, float], levels: list[int], args: argparse.Namespace) -> str:
    def best(prefix: str) -> tuple[str, float]:
        key = max((k for k in r if k.startswith(prefix) and k.endswith(" rps")), key=r.__getitem__)
        return key[len(prefix) : -len(" rps")].strip(), r[key]

    (layout, ceiling), (seq_layout, per_seq) = best("raw batched"), best("raw per-sequence")
    rows = [
        (f"raw batched ceiling (threads x intra-op {layout}, batch {args.max_batch})", f"{ceiling:9.1f}/s"),
        (f"raw per-sequence, no padding ({seq_layout})", f"{per_seq:9.1f}/s"),
        ("raw batch-1 latency", f"p50 {r['raw batch-1 p50 ms']:.2f} ms  p99 {r['raw batch-1 p99 ms']:.2f} ms"),
    ]
    if "core batch-1 p50 ms" in r:
        p50, p99 = r["core batch-1 p50 ms"], r["core batch-1 p99 ms"]
        rows.append(("core batch-1 (tokenize + run + router, in-process)", f"p50 {p50:.2f} ms  p99 {p99:.2f} ms"))
    for c in levels:
        rate, p50, p99 = r[f"rpc c{c} rps"], r[f"rpc c{c} p50 ms"], r[f"rpc c{c} p99 ms"]
        rows.append((f"Score RPC, concurrency {c}", f"{rate:9.1f}/s   p50 {p50:.2f} ms  p99 {p99:.2f} ms"))
        if f"rpc c{c} baseline rps" in r:
            b_rate, b50, b99 = (r[f"rpc c{c} baseline {k}"] for k in ("rps", "p50 ms", "p99 ms"))
            rows.append(
                (
                    f"  baseline scorer, concurrency {c}",
                    f"{b_rate:9.1f}/s   p50 {b50:.2f} ms  p99 {b99:.2f} ms   (this / baseline {rate / b_rate:.2f}x)",
                )
            )
    if "rpc random c1 p50 ms" in r:
        rate, p50, p99 = r["rpc random c1 rps"], r["rpc random c1 p50 ms"], r["rpc random c1 p99 ms"]
        rows.append(
            ("Score RPC, random router (no inference), conc. 1", f"{rate:9.1f}/s   p50 {p50:.2f} ms  p99 {p99:.2f} ms")
        )
    torch_rps = r.get("torch one-at-a-time rps")
    if torch_rps is not None:
        rows.append(("torch eager, one request at a time", f"{torch_rps:9.1f}/s"))
    lines = ["", *(f"{name:<52}{value}" for name, value in rows), "", "ratios (targets):"]
    top = max(levels)
    hi = r[f"rpc c{top} rps"]

    def line(name: str, value: float, target: str, ok: bool | None) -> str:
        verdict = "" if ok is None else ("PASS" if ok else "FAIL")
        return f"  {name:<44}{value:8.2f}   {target:<16}{verdict}"

    lines.append(line(f"Score@{top} / raw batched ceiling", hi / ceiling, ">= 0.8", hi / ceiling >= 0.8))
    best_raw = max(ceiling, per_seq)
    lines.append(line(f"Score@{top} / best raw mode", hi / best_raw, ">= 0.8", hi / best_raw >= 0.8))
    if torch_rps is not None:
        lines.append(line(f"Score@{top} / torch one-at-a-time", hi / torch_rps, ">= 5", hi / torch_rps >= 5))
    if 1 in levels:
        gap = r["rpc c1 p50 ms"] - r["raw batch-1 p50 ms"]
        lines.append(line("p50@1 - raw batch-1 p50 (ms)", gap, "<= 1 ms", gap <= 1.0))
        if "core batch-1 p50 ms" in r:
            model = r["core batch-1 p50 ms"] - r["raw batch-1 p50 ms"]
            lines.append(line("  of which tokenize + router (core - raw)", model, "(breakdown)", None))
            lines.append(line("  of which serving (p50@1 - core)", gap - model, "(breakdown)", None))
    return "\n".join(lines)
