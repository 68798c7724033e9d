"""Scorer cost by prompt length: server time per length bucket, this scorer vs a baseline vs raw onnxruntime.

Part of ``ferryman bench scorer`` (``--length-routers``). Each round, for every router (mf, sw,
bert), every prompt of the mix (``bench.prompts``) is scored once, one call at a time, by this
checkout's scorer and (with ``--baseline-dir``) the baseline scorer, alternating which goes first
prompt by prompt; the ``server_time_ms`` each reports is grouped by the prompt's token count (the
whole prompt, before the window's truncation). After each prompt, raw onnxruntime runs the same
router's graph on it, pre-tokenized and truncated to the router's window (``session.run`` only),
once with one intra-op thread (the server's session while other calls run) and twice with the
idle-call thread count (``scorer.encoder.default_idle_threads``), threads sleeping between operators
and spinning: the server's sessions for a call that runs alone. The win rates of both scorers are compared
prompt by prompt: a cost change must not move a score (``max |delta|``).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import defaultdict
from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.prompts import BUCKETS
from scorer.artifacts import EncoderSpec, load_artifact
from scorer.encoder import (
    TOKENIZER_FILE,
    Batch,
    WordpieceTokenizer,
    default_idle_threads,
    feeds,
    make_session,
    model_file,
)


@dataclass
class ServerSamples:
    """One scorer's answers for one router: server times by bucket and the last win rate per prompt."""

    server_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    rates: dict[int, float] = field(default_factory=dict)


def token_counts(encoder_dir: Path, texts: Sequence[str]) -> list[int]:
    """Wordpiece tokens of each whole prompt (no truncation, no [CLS]/[SEP])."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(encoder_dir / TOKENIZER_FILE))
    tok.no_truncation()
    tok.no_padding()
    return [len(e.ids) for e in tok.encode_batch(list(texts), add_special_tokens=False)]


async def score_interleaved(
    servers: dict[str, str],
    router: str,
    texts: Sequence[str],
    buckets: Sequence[str],
    out: dict[str, ServerSamples],
    raw: RawGraph,
    flip: bool,
) -> None:
    """Every text once on each server, one call at a time, servers alternating first, then raw runs of it.

    Interleaving call by call makes drift in the machine's load hit every measure alike.
    """
    import grpc

    from ferryman.scorer.v1 import scorer_pb2 as pb
    from ferryman.scorer.v1 import scorer_pb2_grpc as pbg

    opts = [("grpc.max_send_message_length", 64 << 20)]
    channels = {name: grpc.aio.insecure_channel(addr, options=opts) for name, addr in servers.items()}
    stubs = {name: pbg.ScorerServiceStub(ch) for name, ch in channels.items()}
    try:
        for stub in stubs.values():
            await stub.Score(pb.ScoreRequest(router=router, prompt=texts[0]), timeout=60)
        names = list(stubs)
        for i, (text, bucket) in enumerate(zip(texts, buckets, strict=True)):
            for name in names if (i % 2 == 0) != flip else names[::-1]:
                reply = await stubs[name].Score(pb.ScoreRequest(router=router, prompt=text), timeout=60)
                out[name].server_ms[bucket].append(reply.server_time_ms)
                out[name].rates[i] = reply.strong_win_rate
            raw.run_one(i, bucket)
    finally:
        for ch in channels.values():
            await ch.close()


@dataclass
class RawGraph:
    """A router's graph as raw onnxruntime runs it: pre-tokenized inputs, one thread and idle threads."""

    label: str
    batches: list[Batch]
    sessions: dict[str, object]
    inputs: set[str]
    times: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def run_one(self, i: int, bucket: str) -> None:
        """Run prompt ``i`` once on every session, timing ``session.run`` only."""
        f = feeds(self.batches[i], self.inputs)
        for name, session in self.sessions.items():
            start = time.perf_counter()
            session.run(None, f)  # type: ignore[attr-defined]
            self.times.setdefault(name, defaultdict(list))[bucket].append((time.perf_counter() - start) * 1e3)


def raw_graph(routers_dir: Path, router: str, encoder_dir: Path, texts: Sequence[str]) -> RawGraph:
    """The graph ``router`` runs (the shared encoder, or BERT's own), on the texts cut to its window."""
    artifact = load_artifact(routers_dir / router)
    m = artifact.manifest
    spec = m.encoder or EncoderSpec()
    if m.kind == "bert":
        role = "onnx_unpadded" if "onnx_unpadded" in m.files else "onnx"
        path = artifact.path(role)
    else:
        path = encoder_dir / model_file("int8", unpadded=True, layers=spec.layers)
        if not path.is_file():
            path = encoder_dir / model_file("int8", layers=spec.layers)
    tok = WordpieceTokenizer(encoder_dir / TOKENIZER_FILE, spec)
    batches = [tok.pad([ids]) for ids in tok.ids(texts)]
    idle = default_idle_threads()
    sessions: dict[str, object] = {"1 thread": make_session(path, 1)}
    if idle > 1:  # the lone-call sessions of the server (scorer.encoder.GraphPair): threads sleeping, spinning
        sessions[f"{idle} threads"] = make_session(path, idle)
        sessions[f"{idle} spinning"] = make_session(path, idle, spin=True)
    first = next(iter(sessions.values()))
    inputs = {i.name for i in first.get_inputs()}  # type: ignore[attr-defined]
    return RawGraph(f"{path.parent.name}/{path.name}, window {spec.max_tokens}", batches, sessions, inputs)


def pcts(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{np.percentile(values, 50):6.1f} / {np.percentile(values, 99):6.1f}"


def report(
    router: str,
    window: int,
    this: ServerSamples,
    base: ServerSamples | None,
    raw: RawGraph,
) -> list[str]:
    """The bucket table of one router, then the score comparison."""
    raw_names = list(raw.times)
    head = f"{'tokens':<9}{'n':>5}  {'this p50 / p99 ms':>18}"
    if base is not None:
        head += f"  {'baseline p50 / p99':>18}  {'p50 this/base':>13}"
    head += "".join(f"  {'raw ' + n + ' p50/p99':>20}" for n in raw_names)
    lines = [f"router {router} (window {window} tokens; raw: {raw.label})", head]
    for label, _ in BUCKETS:
        values = this.server_ms.get(label, [])
        if not values:
            continue
        row = f"{label:<9}{len(values):>5}  {pcts(values):>18}"
        if base is not None:
            b = base.server_ms.get(label, [])
            ratio = np.percentile(values, 50) / np.percentile(b, 50) if b else float("nan")
            row += f"  {pcts(b):>18}  {ratio:>13.2f}"
        row += "".join(f"  {pcts(raw.times[n].get(label, [])):>20}" for n in raw_names)
        lines.append(row)
    if base is not None:
        common = sorted(set(this.rates) & set(base.rates))
        delta = max((abs(this.rates[i] - base.rates[i]) for i in common), default=float("nan"))
        lines.append(f"win rates, this vs baseline: max |delta| {delta:.3g} over {len(common)} prompts")
    return lines


def window_variants(routers_dir: Path, routers: Sequence[str], windows: Sequence[int], dest: Path) -> list[str]:
    """In ``dest``: links to every artifact of ``routers_dir``, plus each router at each other window.

    A variant ``<router>-w<N>`` has the router's files and a manifest whose encoder window is N
    tokens (head unchanged): the same cost as that router would have at that window. Its scores
    are not the shipped router's, so it only measures cost. Returns the variants' names.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for art in sorted(routers_dir.iterdir()):
        if (art / "manifest.json").is_file() and not (dest / art.name).exists():
            (dest / art.name).symlink_to(art.resolve(), target_is_directory=True)
    names = []
    for router in routers:
        manifest = json.loads((routers_dir / router / "manifest.json").read_text())
        if not manifest.get("encoder"):
            continue
        for window in windows:
            if window == manifest["encoder"]["max_tokens"]:
                continue
            name = f"{router}-w{window}"
            variant = dest / name
            variant.mkdir(exist_ok=True)
            for f in (routers_dir / router).iterdir():
                if f.name != "manifest.json" and not (variant / f.name).exists():
                    (variant / f.name).symlink_to(f.resolve())
            encoder = manifest["encoder"] | {"max_tokens": window}
            (variant / "manifest.json").write_text(json.dumps(manifest | {"name": name, "encoder": encoder}))
            names.append(name)
    return names


def run_rounds(
    rounds: int,
    routers: Sequence[str],
    texts: Sequence[str],
    buckets: Sequence[str],
    servers: dict[str, str],
    raws: dict[str, RawGraph],
    only_this: Set[str] = frozenset(),
) -> dict[str, dict[str, ServerSamples]]:
    """Rounds over every router; within one, calls interleave server by server and prompt by prompt.

    Routers in ``only_this`` (window variants) are scored by the first server only.
    """
    samples = {name: {r: ServerSamples() for r in routers} for name in servers}
    first = next(iter(servers))
    for rnd in range(rounds):
        for router in routers:
            these = {first: servers[first]} if router in only_this else servers
            out = {name: samples[name][router] for name in these}
            asyncio.run(score_interleaved(these, router, texts, buckets, out, raws[router], flip=rnd % 2 == 1))
        print(f"  length round {rnd + 1}/{rounds} done (load average {os.getloadavg()[0]:.2f})", flush=True)
    return samples
