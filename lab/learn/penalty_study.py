"""The correction's penalties on the learning-curve rows: a grid of (``l2``, ``prior_l2``).

The learning-curve protocol (:mod:`lab.learn.curve`: the same splits, judged-sample counts and
held-back slice; the candidate is fitted on the training part, as ``ferryman learn retrain`` does),
scoring each setting's candidate on the split's test part directly from the fitted correction.
Prints and writes the mean gain over the shipped router per row, count and setting
(docs/lab-log.md, 2026-12-05):

    python -m lab.learn.penalty_study --json reports/learn/penalty-study.json --rows mmlu,gsm8k
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from lab.data.benchmarks import STRONG, WEAK
from lab.learn.curve import CurvePlan, split_traffic, test_size_for
from lab.learn.gate import verdict_apgr
from lab.learn.gate_study import HELD_OUT, TUNING
from lab.learn.retrain import LearnConfig, features, fit_features
from lab.learn.scoring import Embedder, load_scoring_router
from lab.learn.study import study_args, study_setup, write_report
from lab.learn.traffic import in_holdout, load_traffic
from scorer.routers import length_head
from scorer.routers.base import sigmoid


def study_row(
    name: str,
    learn_dir: Path,
    embedder: Embedder,
    plan: CurvePlan,
    configs: list[LearnConfig],
    length_feature: bool = False,
) -> dict[str, dict[str, float]]:
    """``{"l2/prior_l2": {"<n>": mean gain over the shipped router}}`` for one row.

    ``length_feature``: the prior's length-head feature (clamped standardised log-length) is one
    more column of the correction.
    """
    traffic = load_traffic(learn_dir / f"{name}.csv", STRONG, WEAK)
    prior = load_scoring_router(learn_dir / f"mf-without-{name}", embedder)
    verdicts = traffic.verdicts()
    emb, prior_logit = features(prior, list(traffic.samples), embedder)
    if length_feature:
        head = length_head.parse(prior.artifact.manifest.params, prior.artifact.root)
        if head is None:
            raise ValueError(f"{prior.artifact.root} has no length head")
        emb = np.hstack([emb, head.clamped_z(traffic.prompts)[:, None]])
    shipped = sigmoid(prior_logit)
    size = test_size_for(traffic, plan)
    gains: dict[str, dict[str, list[float]]] = {}
    for split in range(plan.splits):
        test, pool = split_traffic(traffic, size, np.random.default_rng(plan.seed + split))
        t = np.array(test)
        base = verdict_apgr(shipped[t], verdicts[t])
        for n in plan.samples:
            if n == 0:
                continue
            judged = pool[:n]
            for config in configs:
                train = np.array(
                    [i for i in judged if not in_holdout(traffic.samples[i].key, config.holdout, config.salt)]
                )
                c = fit_features(emb[train], prior_logit[train], verdicts[train].astype(np.float64), config)
                score = verdict_apgr(sigmoid(c.logit(emb[t], prior_logit[t])), verdicts[t])
                key = f"{config.l2:g}/{config.prior_l2:g}"
                gains.setdefault(key, {}).setdefault(str(n), []).append(score - base)
        print(f"{name}: split {split + 1}/{plan.splits}", file=sys.stderr, flush=True)
    return {k: {n: round(float(np.mean(v)), 5) for n, v in per.items()} for k, per in gains.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    held_out = f"held out: {','.join(HELD_OUT)}"
    study_args(p, json_help="write the mean gains here", rows=",".join(TUNING), rows_help=held_out)
    p.add_argument("--l2", default="1,3,10,30", help="penalties on the embedding weights")
    p.add_argument("--prior-l2", default="0.3,1,3", help="penalties pulling the prior's weight to 1")
    p.add_argument("--length-feature", action="store_true", help="the length-head feature as a correction column")
    args = p.parse_args(argv)
    grid = itertools.product((float(x) for x in args.l2.split(",")), (float(x) for x in args.prior_l2.split(",")))
    configs = [LearnConfig(l2=a, prior_l2=b) for a, b in grid]
    plan, embedder, rows = study_setup(args)
    t0 = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):
        per_row = {row: study_row(row, args.learn_dir, embedder, plan, configs, args.length_feature) for row in rows}
    summary = {}
    for config in configs:
        key = f"{config.l2:g}/{config.prior_l2:g}"
        cells = [g for row in rows for g in per_row[row][key].values()]
        summary[key] = round(float(np.mean(cells)), 5)
        at_max = " ".join(f"{per_row[row][key][str(max(plan.samples))]:+.3f}" for row in rows)
        print(f"l2/prior_l2 {key:8} mean gain {summary[key]:+.4f}   at {max(plan.samples)}: {at_max}")
    result: dict[str, Any] = {"rows": rows, "length_feature": args.length_feature, "mean_gain": summary}
    result["per_row"] = per_row
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    write_report(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
