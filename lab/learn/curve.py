"""The learning-curve simulation: how fast retraining on a user's judged traffic pays off.

A traffic file (Arena 55k schema) stands for a user's traffic, and its labels
for a judge that answers every shadow comparison. For each of ``splits`` random
splits (by prompt, so copies of a prompt never straddle the parts):

- a fixed **test part** of the traffic is set aside and never judged;
- the first ``N`` prompts of the rest, for each ``N`` in ``samples``, are "judged";
  the product's own retraining (:mod:`lab.learn.retrain`: held-back slice, prior
  plus correction written as an MF artifact, or an SW prior with the judged battles
  appended; loaded with the scorer's router code) runs on them;
- the candidate's APGR on the test part is recorded beside the shipped router's
  and the random router's, and the promotion gate (:mod:`lab.learn.gate`) is run
  on the candidate's held-back slice, to count promotions and — the safety
  property — promotions of a candidate that is *not* better than the shipped
  router on the test part; ``served_apgr`` is what the user would be served after
  the gate (the candidate if promoted, else the shipped router);
- as a reference, the learner of the issue's outside simulation: a plain logistic
  regression on the frozen embeddings trained on all ``N`` judged samples alone
  (no prior, no held-back slice, L2 = 1 as scikit-learn's default ``C = 1``).

Output: ``{"curve": [{"samples", "apgr", "sd", ...}], "shipped_apgr",
"random_apgr", ...}`` as JSON, and a PNG plot.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lab.eval.metrics import apgr, endpoints, random_curve
from lab.learn.correction import fit_correction
from lab.learn.gate import GateRule, paired_bootstrap_gate, verdict_apgr
from lab.learn.retrain import LearnConfig, check_prior, fit_update, split_holdout, write_candidate
from lab.learn.scoring import Embedder, ScoringRouter, load_scoring_router
from lab.learn.traffic import Judged, Traffic, targets


@dataclass(frozen=True)
class CurvePlan:
    """What to simulate."""

    samples: tuple[int, ...] = (0, 100, 300, 1000)
    splits: int = 10
    test_size: int = 0  # 0: min(3000, prompts - max(samples))
    seed: int = 0
    gate: GateRule = field(default_factory=GateRule)  # the product's promotion rule

    def __post_init__(self) -> None:
        # was: --splits 0 simulated nothing and printed "APGR nan" lines (exit 0) into a JSON of NaNs
        if not self.samples or min(self.samples) < 0:
            raise ValueError(f"--samples must be counts >= 0, got {','.join(map(str, self.samples))!r}")
        if self.splits < 1:
            raise ValueError(f"--splits must be at least 1, is {self.splits}")
        if self.test_size < 0:
            raise ValueError(f"--test-size must be >= 0 (0: chosen from the traffic), is {self.test_size}")


def split_traffic(traffic: Traffic, test_size: int, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """(test sample indices, pool sample indices in judging order), split by prompt key."""
    by_key: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(traffic.samples):
        by_key[s.key].append(i)
    keys = list(by_key)
    order = rng.permutation(len(keys))
    test: list[int] = []
    pool: list[int] = []
    for k in order.tolist():
        (test if len(test) < test_size else pool).extend(by_key[keys[k]])
    return test, pool


def test_size_for(traffic: Traffic, plan: CurvePlan) -> int:
    """The test part's size: the plan's, or min(3000, samples - the largest N); at least 100."""
    n = len(traffic.samples)
    size = plan.test_size or min(3000, n - max(plan.samples))
    if size < 100 or size + max(plan.samples) > n:
        need = max(plan.test_size or 100, 100) + max(plan.samples)
        raise ValueError(
            f"{n} judged samples are too few: the curve needs a test part of at least 100"
            f"{f' (asked: {plan.test_size})' if plan.test_size else ''} plus {max(plan.samples)} to judge"
            f" (the largest --samples), {need} in all; use a larger traffic file or fewer --samples"
        )
    return size


def _check_apgr_defined(verdicts: np.ndarray, where: str) -> None:
    """ValueError unless the strong model wins more comparisons than the weak one (else APGR is undefined)."""
    strong, weak = int(np.count_nonzero(verdicts > 0)), int(np.count_nonzero(verdicts < 0))
    if strong <= weak:
        raise ValueError(
            f"APGR is undefined on {where}: no net strong wins (the strong answer better in {strong}, "
            f"the weak one in {weak}); the curve needs traffic on which the strong model is better"
        )


def _random_apgr(verdicts: np.ndarray) -> float:
    strong, weak = (verdicts > 0).astype(np.float64), (verdicts < 0).astype(np.float64)
    weak_q, strong_q = endpoints(strong, weak)
    return apgr(random_curve(strong, weak), weak_q, strong_q)


def simulate(
    traffic: Traffic,
    shipped_dir: Path,
    embedder: Embedder,
    config: LearnConfig,
    plan: CurvePlan,
    *,
    router_strong: str = "",
    router_weak: str = "",
    progress: bool = True,
) -> dict[str, Any]:
    """Run the simulation; returns the JSON-ready result."""
    t0 = time.perf_counter()
    prior = load_scoring_router(shipped_dir, embedder, strong=router_strong, weak=router_weak)
    check_prior(prior)
    test_size = test_size_for(traffic, plan)
    prompts = traffic.prompts
    verdicts = traffic.verdicts()
    _check_apgr_defined(verdicts, f"the traffic ({len(verdicts)} judged samples)")
    _say(progress, f"scoring {len(prompts)} traffic prompts with the shipped router {shipped_dir} ...")
    shipped = prior.score(prompts, embedder)
    per_n: dict[int, list[float]] = defaultdict(list)
    served: dict[int, list[float]] = defaultdict(list)
    judged_only: dict[int, list[float]] = defaultdict(list)
    promoted: dict[int, int] = defaultdict(int)
    promoted_worse: dict[int, int] = defaultdict(int)
    shipped_apgr, random_apgr = [], []
    with tempfile.TemporaryDirectory(prefix="ferryman-curve-") as tmp:
        for split in range(plan.splits):
            rng = np.random.default_rng(plan.seed + split)
            test, pool = split_traffic(traffic, test_size, rng)
            t_idx = np.array(test)
            _check_apgr_defined(verdicts[t_idx], f"split {split + 1}'s test part ({len(t_idx)} samples)")
            base = verdict_apgr(shipped[t_idx], verdicts[t_idx])
            shipped_apgr.append(base)
            random_apgr.append(_random_apgr(verdicts[t_idx]))
            for n in plan.samples:
                judged = [traffic.samples[i] for i in pool[:n]]
                result, gate_ok = _one_retrain(
                    prior, judged, traffic, t_idx, shipped, embedder, config, plan, Path(tmp) / f"s{split}-n{n}"
                )
                per_n[n].append(result)
                served[n].append(result if gate_ok else base)
                judged_only[n].append(_judged_only_apgr(prior, judged, traffic, t_idx, embedder))
                promoted[n] += int(gate_ok)
                promoted_worse[n] += int(gate_ok and result <= base)
                _say(
                    progress,
                    f"split {split + 1}/{plan.splits}, {n:>5} judged: APGR {result:.4f} (shipped {base:.4f})"
                    f"{', promoted' if gate_ok else ''}  [{time.perf_counter() - t0:.0f} s]",
                )
    curve = []
    for n in plan.samples:
        vals = np.array(per_n[n])
        gains = vals - np.array(shipped_apgr)
        curve.append(
            {
                "samples": n,
                "apgr": round(float(vals.mean()), 5),
                "sd": round(float(vals.std(ddof=1)) if len(vals) > 1 else 0.0, 5),
                "gain_over_shipped": round(float(gains.mean()), 5),
                "gain_sd": round(float(gains.std(ddof=1)) if len(gains) > 1 else 0.0, 5),
                "served_apgr": round(float(np.mean(served[n])), 5),
                "judged_only_apgr": round(float(np.mean(judged_only[n])), 5),
                "judged_only_sd": round(float(np.std(judged_only[n], ddof=1)) if len(vals) > 1 else 0.0, 5),
                "promoted": promoted[n],
                "promoted_not_better": promoted_worse[n],
                "per_split": [round(float(v), 5) for v in vals],
            }
        )
    return {
        "curve": curve,
        "shipped_apgr": round(float(np.mean(shipped_apgr)), 5),
        "shipped_sd": round(float(np.std(shipped_apgr, ddof=1)) if len(shipped_apgr) > 1 else 0.0, 5),
        "random_apgr": round(float(np.mean(random_apgr)), 5),
        "splits": plan.splits,
        "test_size": test_size,
        "traffic_samples": len(traffic.samples),
        "pair": {"strong": traffic.strong, "weak": traffic.weak},
        "shipped": str(shipped_dir),
        "shipped_trained_on": prior.artifact.manifest.provenance.get("trained_on", ""),
        "learn_config": {k: getattr(config, k) for k in ("l2", "prior_l2", "holdout", "salt")},
        "gate": asdict(plan.gate),
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def _one_retrain(
    prior: ScoringRouter,
    judged: Sequence[Judged],
    traffic: Traffic,
    test: np.ndarray,
    shipped: np.ndarray,
    embedder: Embedder,
    config: LearnConfig,
    plan: CurvePlan,
    out_dir: Path,
) -> tuple[float, bool]:
    """One simulated ``ferryman learn retrain`` + ``promote``: (candidate APGR on test, gate passed)."""
    train, held = split_holdout(judged, config)
    write_candidate(
        prior,
        fit_update(prior, train, embedder, config),
        out_dir,
        version="simulated",
        calibration_prompts=(),
        calibration_label="",
        embedder=embedder,
        prov={"learn_train_samples": str(len(train))},
    )
    candidate = load_scoring_router(out_dir, embedder, strong=prior.strong, weak=prior.weak)
    test_prompts = [traffic.samples[i].prompt for i in test.tolist()]
    score = verdict_apgr(candidate.score(test_prompts, embedder), traffic.verdicts()[test])
    if not held:
        return score, False
    held_prompts = [s.prompt for s in held]
    held_verdicts = np.array([s.verdict for s in held])
    gate = paired_bootstrap_gate(
        candidate.score(held_prompts, embedder),
        prior.score(held_prompts, embedder),
        held_verdicts,
        plan.gate,
    )
    return score, gate.promote


def _judged_only_apgr(
    prior: ScoringRouter, judged: Sequence[Judged], traffic: Traffic, test: np.ndarray, embedder: Embedder
) -> float:
    """The outside simulation's learner: logistic regression on the embeddings of the judged samples alone."""
    spec = prior.router.encoder_spec
    if not judged or spec is None:
        return 0.5
    emb = embedder.embed([s.prompt for s in judged], spec)
    verdicts = np.array([s.verdict for s in judged], dtype=np.float64)
    fit = fit_correction(emb, np.zeros(len(judged)), targets(verdicts), l2=1.0)
    test_emb = embedder.embed([traffic.samples[i].prompt for i in test.tolist()], spec)
    return verdict_apgr(fit.logit(test_emb, np.zeros(len(test))), traffic.verdicts()[test])


def plot_curve(result: dict[str, Any], path: Path, title: str) -> Path:
    """APGR against judged samples (mean ± sd over splits), with the shipped and random routers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [p["samples"] for p in result["curve"]]
    ys = [p["apgr"] for p in result["curve"]]
    sds = [p["sd"] for p in result["curve"]]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=80)
    pos = list(range(len(xs)))
    ax.errorbar(pos, ys, yerr=sds, marker="o", capsize=4, color="tab:blue", label="candidate (prior + correction)")
    served = [p["served_apgr"] for p in result["curve"]]
    ax.plot(pos, served, marker="s", color="tab:green", linestyle="-", label="served after the promotion gate")
    only = [p["judged_only_apgr"] for p in result["curve"]]
    ax.plot(pos[1:], only[1:], marker="^", color="tab:purple", linestyle="-.", label="judged samples alone (plain LR)")
    ax.axhline(result["shipped_apgr"], color="tab:orange", linestyle="--", label="shipped router")
    ax.axhline(result["random_apgr"], color="grey", linestyle=":", label="random")
    ax.set_xticks(pos, [str(x) for x in xs])
    ax.set_xlabel("judged samples")
    ax.set_ylabel(f"APGR on the test part (mean ± sd, {result['splits']} splits)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _say(enabled: bool, text: str) -> None:
    if enabled:
        print(text, file=sys.stderr, flush=True)
