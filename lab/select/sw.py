"""Choose the SW settings on validation carved from the training folds only.

For each outer fold ``o`` of a fold assignment (e.g. ``build/crossfit/subject/folds.json``)
the training part is every fold but ``o``. It is cut into ``k_inner`` inner folds —
under the subject scheme whole MMLU subjects per inner fold (size-balanced, in a
seeded order) and GSM8K prompts at random; under the prompt scheme every prompt at
random — and each inner fold is scored by a real SW artifact
(:func:`lab.train.routers.sw.train_sw_artifact`, loaded by the scorer's
:class:`~scorer.routers.sw.SWRouter`) trained on the other inner folds. The
criterion is the mean over outer folds of the pooled inner APGR, averaged over
MMLU and GSM8K. Outer fold ``o``'s prompts are neither trained on nor scored, and
MT-Bench is never loaded, so the reported cross-fitted and MT-Bench numbers stay
untouched by the choice.

Every candidate is the recipe (``lab/recipes/sw.toml``, or ``--recipe``) with the grid's settings
changed (``candidates``): its other settings (``within_groups``, ``length_residual``) are the
recipe's, as ``ferryman train`` reads them, and prompts are embedded at its window and depth.

Usage: ``python -m lab.select.sw --folds build/crossfit/subject/folds.json``
(``--help`` for the grid). Prints one line per candidate and writes all results as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from ferryman import paths
from lab.data.benchmarks import GOLDEN_BENCHMARKS, STRONG, WEAK, LabeledPrompt, default_data_dir, load_golden
from lab.data.embed_cache import embed_cached
from lab.data.folds import FoldAssignment
from lab.eval.metrics import apgr_by_benchmark
from lab.train.data import TrainingData, load_training_data
from lab.train.jobs import Target
from lab.train.recipe import describe, load_recipe
from lab.train.routers.sw import train_sw_artifact
from lab.train.sw import SWConfig
from scorer.artifacts import load_artifact
from scorer.encoder import Encoder
from scorer.routers.base import LoadContext
from scorer.routers.sw import SWRouter

_QUERY_BATCH = 512  # [training prompts x batch] float64 similarities per scorer call


def inner_folds(items: Sequence[LabeledPrompt], scheme: str, k: int, seed: int) -> np.ndarray:
    """Inner fold per item: whole MMLU subjects (size-balanced) under ``subject``, else random."""
    rng = np.random.default_rng(seed)
    folds = np.empty(len(items), dtype=np.int64)
    mmlu = np.array([it.benchmark == "mmlu" for it in items])
    if scheme != "subject":
        folds[:] = rng.integers(0, k, len(items))
        return folds
    groups = np.array([it.group for it in items])[mmlu]
    subjects = np.unique(groups)
    rng.shuffle(subjects)
    sizes = {g: int((groups == g).sum()) for g in subjects}
    load = np.zeros(k)
    assign = {}
    for g in sorted(subjects, key=lambda g: -sizes[g]):  # largest first onto the lightest fold
        j = int(np.argmin(load))
        assign[g] = j
        load[j] += sizes[g]
    folds[mmlu] = [assign[g] for g in groups]
    folds[~mmlu] = rng.integers(0, k, int((~mmlu).sum()))
    return folds


class Scorer:
    """Trains SW artifacts on subsets of the golden data and scores prompts with the real router."""

    def __init__(self, full: TrainingData, encoder: Encoder, ctx: LoadContext, cache_dir: Path | None, work: Path):
        self.full, self.encoder, self.ctx, self.cache_dir, self.work = full, encoder, ctx, cache_dir, work

    def scores(self, config: SWConfig, held_out: Sequence[LabeledPrompt]) -> np.ndarray:
        """Scores of ``held_out`` by an SW artifact (``config``) trained on everything else in ``full``."""
        data = self.full.without({it.key for it in held_out})
        target = Target(self.work / "sw", "sw-select", STRONG, WEAK)
        with contextlib.redirect_stdout(io.StringIO()):  # one "written to" line per inner artifact is noise here
            train_sw_artifact(data, target, self.encoder, config, cache_dir=self.cache_dir)
        router = SWRouter(load_artifact(target.out_dir), self.ctx)
        strong, weak = router.model_index(STRONG), router.model_index(WEAK)
        emb = embed_cached([it.prompt for it in held_out], self.encoder, self.cache_dir, progress=False)
        out = np.empty(len(held_out))
        for s in range(0, len(held_out), _QUERY_BATCH):
            rows = slice(s, s + _QUERY_BATCH)
            n = len(emb[rows])
            out[rows] = router.score([""] * n, emb[rows], np.full(n, strong), np.full(n, weak))
        return out

    def inner_apgr(self, config: SWConfig, items: Sequence[LabeledPrompt], folds: np.ndarray) -> dict[str, float]:
        """Pooled APGR per benchmark of ``items``, each inner fold scored by an artifact trained without it."""
        pooled = np.empty(len(items))
        for j in np.unique(folds):
            rows = np.nonzero(folds == j)[0]
            pooled[rows] = self.scores(config, [items[i] for i in rows.tolist()])
        return apgr_by_benchmark(items, pooled)


def candidates(
    recipe: SWConfig, dims: Sequence[int], exponents: Sequence[float], top_ks: Sequence[int]
) -> list[SWConfig]:
    """The grid: the recipe's settings with ``projection_dim``, ``weight_exponent`` and ``top_k`` changed."""
    return [
        replace(recipe, weight_exponent=e, projection_dim=d, top_k=t) for d in dims for e in exponents for t in top_ks
    ]


def _grid(args: argparse.Namespace, recipe: SWConfig) -> list[SWConfig]:
    def ints(v: str) -> list[int]:
        return [int(x) for x in v.split(",") if x]

    return candidates(recipe, ints(args.dims), [float(x) for x in args.exponents.split(",") if x], ints(args.top_ks))


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default."""


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    p.add_argument("--folds", type=Path, required=True, help="folds.json of the outer cross-fitting")
    p.add_argument("--recipe", default="sw", help="the sw recipe every candidate starts from (a name or a .toml)")
    p.add_argument("--scheme", choices=["subject", "prompt"], help="inner split (default: the folds file's scheme)")
    p.add_argument("--k-inner", type=int, default=4, help="inner folds per outer training part")
    p.add_argument("--dims", default="0,4,8", help="projection dims to try (0 = raw embeddings)")
    p.add_argument("--exponents", default="1,3,5,8", help="weight exponents to try")
    p.add_argument("--top-ks", default="0", help="top-k values to try (0 = every battle)")
    p.add_argument("--data-dir", type=Path, help="public data root (default $FERRYMAN_DATA)")
    p.add_argument("--encoder-dir", type=Path, default=paths.encoder_dir(), help="ONNX encoder")
    p.add_argument("--cache-dir", type=Path, default=paths.cache_dir(), help="embedding cache")
    p.add_argument("--threads", type=int, default=2, help="encoder threads (cache misses only)")
    p.add_argument("--out", type=Path, default=Path("build/sw-select.json"), help="results (JSON)")
    args = p.parse_args(argv)
    try:
        recipe = load_recipe(args.recipe)
    except (OSError, ValueError) as exc:
        p.error(f"--recipe {args.recipe}: {exc}")
    if recipe.kind != "sw":
        p.error(f"--recipe {args.recipe}: a {recipe.kind} recipe, not sw")
    grid = _grid(args, recipe.settings)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
    t0 = time.perf_counter()
    data_dir = args.data_dir or default_data_dir()
    folds = FoldAssignment.load(args.folds)
    scheme = args.scheme or folds.scheme
    items = load_golden(data_dir)
    full = load_training_data(battles=None, golden=list(GOLDEN_BENCHMARKS), data_dir=data_dir)
    # the recipe's window and depth, as sw is trained and served
    encoder = Encoder(args.encoder_dir, precision="int8", spec=recipe.encoder, threads=args.threads)
    print(f"candidates start from {describe(recipe)}", flush=True)
    ctx = LoadContext(args.encoder_dir, encoder.spec.name)
    splits = []
    for o in range(folds.k):
        part = [it for it in items if folds.fold_of(it.key) != o]
        splits.append((part, inner_folds(part, scheme, args.k_inner, seed=o)))
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="sw-select-") as tmp:
        for config in grid:
            t1 = time.perf_counter()
            # Each outer training part is its own universe: train and score inside it only.
            per_outer = []
            for part, inner in splits:
                keep = {it.key for it in part}
                scorer = Scorer(full.without(set(folds.assignments) - keep), encoder, ctx, args.cache_dir, Path(tmp))
                per_outer.append(scorer.inner_apgr(config, part, inner))
            mean = {b: float(np.mean([r[b] for r in per_outer])) for b in GOLDEN_BENCHMARKS}
            criterion = float(np.mean(list(mean.values())))
            rows.append({"config": asdict(config), "per_outer": per_outer, "mean": mean, "criterion": criterion})
            got = " ".join(f"{b} {v:.4f}" for b, v in mean.items())
            print(f"{_name(config):<28} {scheme} inner: {got}  mean {criterion:.4f} ({time.perf_counter() - t1:.0f} s)")
    best = max(rows, key=lambda r: float(r["criterion"]))  # type: ignore[arg-type]
    print(f"best: {_name(SWConfig(**best['config']))} (criterion {best['criterion']:.4f})")  # type: ignore[arg-type]
    print(f"wall time: {time.perf_counter() - t0:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"folds": str(args.folds), "scheme": scheme, "k_inner": args.k_inner, "recipe": recipe.source}
    result |= {"encoder": asdict(encoder.spec)}
    result |= {"rows": rows, "best": best}
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


def _name(config: SWConfig) -> str:
    space = f"pls d={config.projection_dim}" if config.projection_dim else "raw"
    top = f" top_k={config.top_k}" if config.top_k else ""
    return f"{space} K={config.weight_exponent:g}{top}"


if __name__ == "__main__":
    raise SystemExit(main())
