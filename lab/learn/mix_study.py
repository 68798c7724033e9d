"""Where the mixed rows' gain comes from: between the kinds of prompts, or within each kind.

A mixed row of ``make learn-curve`` (``mix-fold<k>``: every GSM8K prompt plus MMLU fold k's, the prior
trained on the other folds' MMLU only; docs/lab-log.md, 2026-12-05 05:45) can gain in two ways:
ranking GSM8K against MMLU (which *kind* of the user's traffic needs the strong model), and ranking
prompts within each kind. For the curve's splits and judged-sample counts, this fits the candidate
exactly as the curve does (the training part outside the held-back slice) and reports, on each
split's test part:

- the APGR of the shipped router (the prior) and the candidate on the whole test part;
- the same two on each kind's test prompts alone (kind = the row id's benchmark prefix);
- ``kind_only``: a reference that is told each prompt's kind (a router is not) and learnt only
  that — the kinds ordered by the mean verdict of their judged training samples, the prior's order
  within each kind.

    python -m lab.learn.mix_study --json reports/learn/mix-study.json
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from lab.data.benchmarks import STRONG, WEAK
from lab.learn.curve import CurvePlan, split_traffic, test_size_for
from lab.learn.gate import verdict_apgr
from lab.learn.gate_study import MIXED
from lab.learn.retrain import LearnConfig, features, fit_features
from lab.learn.scoring import Embedder, load_scoring_router
from lab.learn.study import study_args, study_setup, write_report
from lab.learn.traffic import in_holdout, load_traffic
from scorer.routers.base import sigmoid


def kind_of(sample_id: str) -> str:
    """The benchmark a converted row came from: ``ferryman data arena`` writes ids ``<benchmark>-<key>``."""
    return sample_id.split("-", 1)[0]


def kind_only_scores(kinds: np.ndarray, shipped: np.ndarray, train: np.ndarray, verdicts: np.ndarray) -> np.ndarray:
    """Kinds ordered by their judged training samples' mean verdict; the prior's order within a kind.

    ``shipped`` is a probability in (0, 1), so adding a kind's rank keeps whole kinds apart.
    """
    means = {k: float(verdicts[train][kinds[train] == k].mean()) for k in set(kinds[train].tolist())}
    rank = {k: r for r, k in enumerate(sorted(means, key=lambda k: means[k]))}
    return np.array([rank.get(k, -1) for k in kinds.tolist()], dtype=np.float64) + shipped


def study_row(name: str, learn_dir: Path, embedder: Embedder, plan: CurvePlan, config: LearnConfig) -> dict[str, Any]:
    """``{"<n>": {measure: mean over splits}}`` and each kind's share and verdict rates, for one row."""
    traffic = load_traffic(learn_dir / f"{name}.csv", STRONG, WEAK)
    prior = load_scoring_router(learn_dir / f"mf-without-{name}", embedder)
    verdicts = traffic.verdicts()
    kinds = np.array([kind_of(s.id) for s in traffic.samples])
    emb, prior_logit = features(prior, list(traffic.samples), embedder)
    shipped = sigmoid(prior_logit)
    size = test_size_for(traffic, plan)
    cells: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for split in range(plan.splits):
        test, pool = split_traffic(traffic, size, np.random.default_rng(plan.seed + split))
        t = np.array(test)
        for n in plan.samples:
            if n == 0:
                continue
            keys = [traffic.samples[i].key for i in pool[:n]]
            train = np.array(
                [i for i, k in zip(pool[:n], keys, strict=True) if not in_holdout(k, config.holdout, config.salt)]
            )
            c = fit_features(emb[train], prior_logit[train], verdicts[train].astype(np.float64), config)
            candidate = sigmoid(c.logit(emb[t], prior_logit[t]))
            cell = cells[str(n)]
            cell["shipped"].append(verdict_apgr(shipped[t], verdicts[t]))
            cell["candidate"].append(verdict_apgr(candidate, verdicts[t]))
            cell["kind_only"].append(verdict_apgr(kind_only_scores(kinds, shipped, train, verdicts)[t], verdicts[t]))
            for kind in sorted(set(kinds.tolist())):
                mine = kinds[t] == kind
                cell[f"shipped_{kind}"].append(verdict_apgr(shipped[t][mine], verdicts[t][mine]))
                cell[f"candidate_{kind}"].append(verdict_apgr(candidate[mine], verdicts[t][mine]))
        print(f"{name}: split {split + 1}/{plan.splits}", file=sys.stderr, flush=True)
    out: dict[str, Any] = {n: {k: round(float(np.mean(v)), 5) for k, v in cell.items()} for n, cell in cells.items()}
    # Of the whole row's traffic: each kind's share and how often its strong / weak answer was better.
    out["share"] = {k: round(float(np.mean(kinds == k)), 4) for k in sorted(set(kinds.tolist()))}
    out["strong_better"] = {k: round(float(np.mean(verdicts[kinds == k] > 0)), 4) for k in out["share"]}
    out["weak_better"] = {k: round(float(np.mean(verdicts[kinds == k] < 0)), 4) for k in out["share"]}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    study_args(p, json_help="write the per-row means here", rows=",".join(MIXED), rows_help="mixed rows")
    args = p.parse_args(argv)
    plan, embedder, rows = study_setup(args)
    t0 = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):
        per_row = {row: study_row(row, args.learn_dir, embedder, plan, LearnConfig()) for row in rows}
    for row, res in per_row.items():
        top = res[str(max(plan.samples))]
        parts = "  ".join(f"{k} {v:.3f}" for k, v in top.items())
        print(f"{row} at {max(plan.samples)}: {parts}")
    result = {"rows": per_row, "splits": args.splits, "wall_s": round(time.perf_counter() - t0, 1)}
    write_report(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
