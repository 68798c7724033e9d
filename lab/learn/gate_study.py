"""Which promotion gate? The candidates of docs/lab-log.md (2026-12-05), measured in one pass.

For every row of ``make learn-curve`` (a traffic file and the mf router trained without it), the
same random splits and judged-sample counts as the learning curve (:mod:`lab.learn.curve`), and two
kinds of evidence:

- **held-back** (the gate before 2026-12-05): the candidate is fitted on the 80 % of the judged
  prompts outside the salted 20 % slice, and the gate compares it with the shipped router on the slice;
- **cross-fitted**: the candidate is fitted on all judged prompts, and the gate compares the
  out-of-fold scores (:func:`out_of_fold_scores`) with the shipped router's on all
  of them.

Each kind's paired bootstrap draws (:func:`lab.learn.gate.area_differences`) are computed once and
every design of that kind (level, minimum effect) decides on them; a design may also require the other
kind's interval (``also_held``). A quantile is read from the first ``max(--resamples, 2 / tail)`` draws
(:func:`draws_for`): the same ``--resamples`` draws for every level up to 99 %; 99.9 %'s 0.05 % quantile
reads 4,000 (with one seed, the first 1,000 of them are those draws). A promotion is *not better* when
the candidate's APGR on the split's test part is <= the shipped router's. Writes every decision and
the summary per design to ``--json``; the selection rule is applied by the reader (docs/lab-log.md).
``--designs`` runs a subset (an evidence no chosen design reads is not computed: H95 and H99 alone skip
the cross-fitted fits) and ``--first-split`` starts at a later split (split ``k`` draws its test part
with seed ``k``, as the learning curve), so more splits can be added to an earlier run's.

    python -m lab.learn.gate_study --json reports/learn/gate-study.json
    python -m lab.learn.gate_study --json OUT --designs H95,H99 --rows mmlu,gsm8k --first-split 10 --splits 30
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from lab.data.benchmarks import STRONG, WEAK
from lab.learn.correction import Correction
from lab.learn.curve import CurvePlan, split_traffic, test_size_for
from lab.learn.gate import GateRule, area_differences, verdict_apgr
from lab.learn.retrain import LearnConfig, features, fit_features, fit_on_samples, split_holdout
from lab.learn.scoring import Embedder, ScoringRouter, load_scoring_router
from lab.learn.study import study_args, study_setup, write_report
from lab.learn.traffic import Judged, fold_of, load_traffic
from scorer.routers.base import sigmoid

TUNING = ("mmlu", "gsm8k", "mmlu-fold0", "mmlu-fold1")
HELD_OUT = ("mmlu-fold2", "mmlu-fold3", "mmlu-fold4")
# Mixed traffic (GSM8K + one MMLU fold; docs/lab-log.md 2026-12-05 05:45): evaluation only, never chosen on.
MIXED = tuple(f"mix-fold{k}" for k in range(5))


@dataclass(frozen=True)
class Design:
    """A gate: which evidence, the bootstrap quantile that must be above 0, a minimum point ΔAPGR."""

    name: str
    evidence: str  # "held" or "cross"
    tail: float  # lower quantile of the area difference that must be > 0
    min_effect: float = 0.0
    refit: bool = False  # serve the candidate fitted on all judged samples once the gate passes
    # and the held-back slice's lower quantile must be > 0 too; the 80 % candidate (the one tested there) is served
    also_held: float | None = None

    @property
    def served(self) -> str:
        """The record field with the APGR of the candidate this design serves when it promotes."""
        if self.refit:
            return "candidate_cross"
        return "candidate_held" if self.also_held is not None else f"candidate_{self.evidence}"


DESIGNS = (
    Design("H95", "held", 0.025),
    Design("H99", "held", 0.005),
    Design("H95+d", "held", 0.025, 0.02),
    Design("C90", "cross", 0.05),
    Design("C95", "cross", 0.025),
    Design("C99", "cross", 0.005),
    Design("C95+d", "cross", 0.025, 0.02),
    # H99's decisions, then the candidate refitted on 100 % of the judged samples is served
    # (docs/lab-log.md, 2026-12-05 05:46).
    Design("H99+refit", "held", 0.005, refit=True),
    # Gate power (docs/lab-log.md, 2026-12-05 07:05): the cross-fitted 99 % gate and the held-back
    # slice's 90 % interval, serving the 80 % candidate; the cross-fitted gate at 99.9 %.
    Design("C99∧H90", "cross", 0.005, also_held=0.05),
    Design("C99.9", "cross", 0.0005),
)


def out_of_fold_scores(
    prior: ScoringRouter, samples: Sequence[Judged], embedder: Embedder, config: LearnConfig, folds: int
) -> np.ndarray:
    """Cross-fitted candidate scores: each sample scored by the correction fitted without its fold.

    Folds by :func:`lab.learn.traffic.fold_of` (the salted prompt hash, so copies of a prompt share a
    fold). Each fold's candidate is retrain's candidate — the same prior, settings and fit — on the
    other folds' samples: the scores estimate how the candidate fitted on *all* samples does on
    prompts it has not seen, from every judged sample rather than a held-back share.
    """
    emb, prior_logit = features(prior, samples, embedder)
    verdicts = np.array([s.verdict for s in samples], dtype=np.float64)
    fold = np.array([fold_of(s.key, folds, config.salt) for s in samples], dtype=np.int64)
    out = np.empty(len(samples))
    for k in range(folds):
        mine = fold == k
        if not mine.any():
            continue
        rest = ~mine
        correction = fit_features(emb[rest], prior_logit[rest], verdicts[rest], config)
        out[mine] = sigmoid(correction.logit(emb[mine], prior_logit[mine]))
    return out


def _scores(correction: Correction, prior: ScoringRouter, samples: list[Judged], embedder: Embedder) -> np.ndarray:
    emb, prior_logit = features(prior, samples, embedder)
    return sigmoid(correction.logit(emb, prior_logit))


def draws_for(tail: float, resamples: int) -> int:
    """Bootstrap draws a ``tail`` quantile is read from: ``resamples``, or enough to have 2 draws beyond it."""
    return max(resamples, int(np.ceil(2 / tail - 1e-9)))


def tails_of(kind: str, designs: Sequence[Design] = DESIGNS) -> tuple[float, ...]:
    """The lower quantiles some of ``designs`` reads from ``kind``'s ("held" or "cross") evidence."""
    tails = {d.tail for d in designs if d.evidence == kind}
    if kind == "held":
        tails |= {d.also_held for d in designs if d.also_held is not None}
    return tuple(sorted(tails))


def pick_designs(names: str) -> tuple[Design, ...]:
    """The designs named in ``names`` (comma-separated, in :data:`DESIGNS`' order); "" or "all": every one."""
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    if not wanted or wanted == ["all"]:
        return DESIGNS
    known = {d.name for d in DESIGNS}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(f"unknown gate design(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return tuple(d for d in DESIGNS if d.name in wanted)


def _evidence(
    kind: str,
    cand: np.ndarray,
    serving: np.ndarray,
    verdicts: np.ndarray,
    resamples: int,
    designs: Sequence[Design] = DESIGNS,
) -> dict[str, Any]:
    decisive = int(np.count_nonzero(verdicts))
    if decisive < GateRule().min_decisive:
        return {"decisive": decisive, "quantiles": {}, "delta_apgr": None}
    tails = tails_of(kind, designs)
    diffs = area_differences(cand, serving, verdicts, resamples=max(draws_for(t, resamples) for t in tails))
    delta = verdict_apgr(cand, verdicts) - verdict_apgr(serving, verdicts)
    return {
        "decisive": decisive,
        "quantiles": {str(t): float(np.quantile(diffs[: draws_for(t, resamples)], t)) for t in tails},
        "delta_apgr": None if not np.isfinite(delta) else float(delta),
    }


def _passes(ev: dict[str, Any], tail: float) -> bool:
    return bool(ev["quantiles"]) and ev["quantiles"][str(tail)] > 0


def decide(design: Design, evidence: dict[str, dict[str, Any]]) -> bool:
    """``design``'s decision on one retrain's ``{"held": ..., "cross": ...}`` evidence."""
    ev = evidence[design.evidence]
    if not _passes(ev, design.tail):
        return False
    if design.also_held is not None and not _passes(evidence["held"], design.also_held):
        return False
    if design.min_effect > 0:
        return ev["delta_apgr"] is not None and ev["delta_apgr"] >= design.min_effect
    return True


def study_row(
    name: str,
    learn_dir: Path,
    embedder: Embedder,
    plan: CurvePlan,
    config: LearnConfig,
    folds: int,
    resamples: int,
    designs: Sequence[Design] = DESIGNS,
    first_split: int = 0,
) -> list[dict[str, Any]]:
    """Every (split, judged count) of one row: test APGRs of both candidates and each design's decision.

    Splits ``first_split`` .. ``first_split + plan.splits - 1``; split ``k``'s test part is drawn with
    seed ``plan.seed + k`` (as :func:`lab.learn.curve.simulate`). Evidence that none of ``designs``
    reads is not computed (and not recorded).
    """
    kinds = {kind for kind in ("held", "cross") if tails_of(kind, designs)}
    traffic = load_traffic(learn_dir / f"{name}.csv", STRONG, WEAK)
    prior = load_scoring_router(learn_dir / f"mf-without-{name}", embedder)
    verdicts = traffic.verdicts()
    shipped = prior.score(traffic.prompts, embedder)
    all_emb, all_logit = features(prior, list(traffic.samples), embedder)
    size = test_size_for(traffic, plan)
    out = []
    for split in range(first_split, first_split + plan.splits):
        test, pool = split_traffic(traffic, size, np.random.default_rng(plan.seed + split))
        t = np.array(test)
        base = verdict_apgr(shipped[t], verdicts[t])

        def test_apgr(c: Correction, t: np.ndarray = t) -> float:
            return verdict_apgr(sigmoid(c.logit(all_emb[t], all_logit[t])), verdicts[t])

        for n in plan.samples:
            if n == 0:
                continue
            judged = [traffic.samples[i] for i in pool[:n]]
            train, held = split_holdout(judged, config)
            held_c = fit_on_samples(prior, train, embedder, config)
            all_c = fit_on_samples(prior, judged, embedder, config)
            hv = np.array([s.verdict for s in held], dtype=np.float64)
            jv = np.array([s.verdict for s in judged], dtype=np.float64)
            ev = {}
            if "held" in kinds:
                ev["held"] = _evidence(
                    "held",
                    _scores(held_c, prior, held, embedder),
                    prior.score([s.prompt for s in held], embedder),
                    hv,
                    resamples,
                    designs,
                )
            if "cross" in kinds:
                ev["cross"] = _evidence(
                    "cross",
                    out_of_fold_scores(prior, judged, embedder, config, folds),
                    prior.score([s.prompt for s in judged], embedder),
                    jv,
                    resamples,
                    designs,
                )
            cand = {"held": test_apgr(held_c), "cross": test_apgr(all_c)}
            out.append(
                {
                    "row": name,
                    "split": split,
                    "samples": n,
                    "shipped": base,
                    "candidate_held": cand["held"],
                    "candidate_cross": cand["cross"],
                    "evidence": ev,
                    "promote": {d.name: decide(d, ev) for d in designs},
                }
            )
        done = split - first_split + 1
        print(f"{name}: split {split} ({done}/{plan.splits})", file=sys.stderr, flush=True)
    return out


def summarise(
    records: list[dict[str, Any]], rows: tuple[str, ...], designs: Sequence[Design] = DESIGNS
) -> dict[str, Any]:
    """Per design: promotions, not-better promotions, mean served APGR, per row and sample count."""
    result: dict[str, Any] = {}
    for d in designs:
        per: dict[str, Any] = {}
        total_p = total_bad = 0
        served_all = []
        for r in [x for x in records if x["row"] in rows]:
            cand = r[d.served]
            ok = r["promote"][d.name]
            bad = ok and cand <= r["shipped"]
            key = f"{r['row']}@{r['samples']}"
            cell = per.setdefault(key, {"promoted": 0, "not_better": 0, "served": [], "candidate": []})
            cell["promoted"] += int(ok)
            cell["not_better"] += int(bad)
            cell["served"].append(cand if ok else r["shipped"])
            cell["candidate"].append(cand - r["shipped"])
            served_all.append(cand if ok else r["shipped"])
            total_p += int(ok)
            total_bad += int(bad)
        for cell in per.values():
            cell["served"] = round(float(np.mean(cell["served"])), 4)
            cell["candidate_gain"] = round(float(np.mean(cell.pop("candidate"))), 4)
        result[d.name] = {
            "promoted": total_p,
            "not_better": total_bad,
            "mean_served": round(float(np.mean(served_all)), 5) if served_all else None,
            "cells": per,
        }
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    rows_default = ",".join(TUNING + HELD_OUT + MIXED)
    study_args(p, json_help="write the decisions and summaries here", rows=rows_default, rows_help="rows to run")
    p.add_argument("--folds", type=int, default=5, help="cross-fitting folds")
    p.add_argument("--resamples", type=int, default=1000, help="paired bootstrap resamples per decision")
    p.add_argument(
        "--designs",
        default="all",
        help=f"gate designs to decide with (comma-separated, default all: {','.join(d.name for d in DESIGNS)}); "
        "evidence no chosen design reads is skipped",
    )
    p.add_argument(
        "--first-split",
        type=int,
        default=0,
        help="first split to run (split k draws its test part with seed k, as the learning curve), "
        "so that --first-split 10 --splits 30 adds splits 10..39 to a 10-split run",
    )
    args = p.parse_args(argv)
    try:
        designs = pick_designs(args.designs)
    except ValueError as e:
        p.error(str(e))
    if args.first_split < 0 or args.splits < 1:
        p.error(f"--first-split must be >= 0 and --splits >= 1 (are {args.first_split}, {args.splits})")
    plan, embedder, rows = study_setup(args)
    config = LearnConfig()
    t0 = time.perf_counter()
    records: list[dict[str, Any]] = []
    with threadpool_limits(limits=1, user_api="blas"):
        for row in rows:
            records.extend(
                study_row(
                    row, args.learn_dir, embedder, plan, config, args.folds, args.resamples, designs, args.first_split
                )
            )
    tuning = tuple(r for r in rows if r in TUNING)
    held_out = tuple(r for r in rows if r in HELD_OUT)
    mixed = tuple(r for r in rows if r in MIXED)
    summaries = {
        "tuning": summarise(records, tuning, designs),
        "held_out": summarise(records, held_out, designs),
        "mixed": summarise(records, mixed, designs),
    }
    result = {
        "designs": [asdict(d) for d in designs],
        **summaries,
        "records": records,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    for part, summary in summaries.items():
        for name, s in summary.items():
            counts = f"promoted {s['promoted']:3}  not better {s['not_better']:2}"
            print(f"{part:8} {name:9} {counts}  served {s['mean_served']}")
    write_report(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
