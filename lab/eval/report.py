"""Evaluation output: one PNG plot per evaluation set, a Markdown table and JSON.

The table puts the RouteLLM paper's published best numbers (GPT-4 vs Mixtral,
from ``../shared/data/README.md``) beside Ferryman's, and says for every row
which artifacts and training data produced it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lab.eval.metrics import CPT_LEVELS, Curve, Metrics

# Paper's best published results (Ong et al., 2024), GPT-4 vs Mixtral, per benchmark.
PAPER: dict[str, dict[str, float]] = {
    "mt-bench": {"apgr": 0.802, "cpt50": 13.4, "cpt80": 31.3},
    "mmlu": {"apgr": 0.603, "cpt50": 35.4, "cpt80": 70.3},
}
PAPER_SOURCE = "RouteLLM paper, best router (trained on Arena battles + golden-label augmentation)"
_CURVE_POINTS = 101
_ROUTER_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:pink")
_BASELINE_COLORS = ("tab:olive", "tab:cyan", "tab:gray")


@dataclass
class Row:
    """One line of a result: a router, a baseline, the random router or the oracle."""

    name: str
    kind: str  # "router" | "baseline" | "random" | "oracle"
    source: str  # which artifacts / data produced the number
    metrics: Metrics | None = None
    curve: Curve | None = None
    note: str = ""  # why there is no number (refused, missing)
    apgr_10bin: float | None = None  # APGR on RouteLLM's coarse 10-quantile curve, for comparison
    apgr_fold_calibrated: float | None = None  # cross-fitted rows: each fold's scores as rank shares


@dataclass
class SetResult:
    """All rows for one evaluation set (a benchmark under one fold scheme)."""

    key: str  # file stem, e.g. "mmlu-subject"
    benchmark: str
    title: str
    n: int
    weak_quality: float
    strong_quality: float
    rows: list[Row] = field(default_factory=list)

    def row(self, name: str) -> Row | None:
        """The row called ``name``, if any."""
        return next((r for r in self.rows if r.name == name), None)


def _fmt_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} %"


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _dumps(data: dict[str, Any]) -> str:
    """Indented JSON with numeric lists (curves) kept on one line each."""
    text = json.dumps(data, indent=1)
    return re.sub(
        r"\[\s*((?:-?[\d.e+-]+,\s*)*-?[\d.e+-]+)\s*\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text
    )


def _resample(curve: Curve) -> dict[str, list[float]]:
    grid = np.linspace(0.0, 1.0, _CURVE_POINTS)
    return {
        "strong_share": [round(float(x), 4) for x in grid],
        "quality": [round(float(q), 5) for q in np.interp(grid, curve.share, curve.quality)],
    }


def plot_set(result: SetResult, path: Path) -> Path:
    """Quality vs strong-call % for every row, with strong-only and weak-only lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=80)
    routers = iter(_ROUTER_COLORS)
    baselines = iter(_BASELINE_COLORS)
    for row in result.rows:
        if row.curve is None or row.metrics is None:
            continue
        style: dict[str, Any] = {"linewidth": 1.6}
        if row.kind == "oracle":
            style.update(color="black", linestyle=":", linewidth=1.2)
        elif row.kind == "random":
            style.update(color="grey", linestyle="--", linewidth=1.2)
        elif row.kind == "baseline":
            style.update(color=next(baselines, None), linestyle="-.", linewidth=1.2)
        else:
            style.update(color=next(routers, None))
        ax.plot(100 * row.curve.share, row.curve.quality, label=f"{row.name} (APGR {row.metrics.apgr:.3f})", **style)
    ax.axhline(result.strong_quality, color="tab:red", linestyle="--", linewidth=0.9, label="strong only")
    ax.axhline(result.weak_quality, color="tab:brown", linestyle="--", linewidth=0.9, label="weak only")
    ax.set_xlabel("strong model calls (%)")
    ax.set_ylabel("quality" + (" (MT-Bench grade)" if result.benchmark == "mt-bench" else " (accuracy)"))
    ax.set_title(f"{result.title} (n = {result.n})", fontsize=10)
    ax.set_xlim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def markdown_table(results: Sequence[SetResult]) -> str:
    """The results table (with the paper's numbers beside ours) and a per-set legend."""
    lines = [
        "| set | router | APGR | CPT(20%) | CPT(50%) | CPT(80%) | APGR − random | APGR, folds calibrated¹ "
        "| scored by / trained on |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for res in results:
        rnd = res.row("random")
        rnd_apgr = rnd.metrics.apgr if rnd is not None and rnd.metrics is not None else None
        for row in res.rows:
            if row.metrics is None:
                lines.append(f"| {res.title} | {row.name} | — | — | — | — | — | — | {row.note or row.source} |")
                continue
            m = row.metrics
            delta = "" if rnd_apgr is None or row.kind in ("random",) else f"{m.apgr - rnd_apgr:+.3f}"
            cpts = " | ".join(_fmt_pct(m.cpt.get(lv)) for lv in CPT_LEVELS)
            cal = "" if row.apgr_fold_calibrated is None else f"{row.apgr_fold_calibrated:.3f}"
            lines.append(f"| {res.title} | {row.name} | {m.apgr:.3f} | {cpts} | {delta} | {cal} | {row.source} |")
        paper = PAPER.get(res.benchmark)
        if paper is not None:
            lines.append(
                f"| {res.title} | *paper (best)* | *{paper['apgr']:.3f}* | — | *{paper['cpt50']:.1f} %* "
                f"| *{paper['cpt80']:.1f} %* | — | — | {PAPER_SOURCE} |"
            )
    note = (
        "¹ Cross-fitted rows only: APGR when every fold artifact is calibrated to the same strong-call share "
        "(its scores replaced by rank shares within its fold), which removes fold-to-fold score offsets that a "
        "single production router does not have. The main APGR pools raw scores over folds."
    )
    legend = [
        f"- **{r.title}**: n = {r.n} prompts (contaminated removed); weak only {r.weak_quality:.4f}, "
        f"strong only {r.strong_quality:.4f}"
        for r in results
    ]
    return "\n".join(lines) + "\n\n" + "\n".join(legend) + "\n\n" + note + "\n"


def to_json(results: Sequence[SetResult], meta: dict[str, Any]) -> dict[str, Any]:
    """Everything in the table plus curves resampled at 101 shares."""
    sets = []
    for res in results:
        rows = []
        for row in res.rows:
            entry: dict[str, Any] = {"name": row.name, "kind": row.kind, "source": row.source}
            if row.note:
                entry["note"] = row.note
            if row.metrics is not None:
                entry["auc"] = round(row.metrics.auc, 6)
                entry["apgr"] = round(row.metrics.apgr, 6)
                if row.apgr_10bin is not None:
                    entry["apgr_10bin"] = round(row.apgr_10bin, 6)
                if row.apgr_fold_calibrated is not None:
                    entry["apgr_fold_calibrated"] = round(row.apgr_fold_calibrated, 6)
                entry["cpt"] = {f"{int(lv * 100)}%": _round(row.metrics.cpt[lv]) for lv in CPT_LEVELS}
            if row.curve is not None:
                entry["curve"] = _resample(row.curve)
            rows.append(entry)
        sets.append(
            {
                "key": res.key,
                "benchmark": res.benchmark,
                "title": res.title,
                "n": res.n,
                "weak_quality": res.weak_quality,
                "strong_quality": res.strong_quality,
                "paper": PAPER.get(res.benchmark),
                "rows": rows,
            }
        )
    return {"meta": meta, "paper_source": PAPER_SOURCE, "sets": sets}


def write_reports(results: Sequence[SetResult], out: Path, meta: dict[str, Any], *, name: str = "eval") -> list[Path]:
    """Write ``<set>.png`` per set, ``<name>.md`` and ``<name>.json`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [plot_set(res, out / f"{res.key}.png") for res in results]
    header = ["# Ferryman routing evaluation", ""]
    header += [f"- {k}: {v}" for k, v in meta.items()]
    md = out / f"{name}.md"
    md.write_text("\n".join(header) + "\n\n" + markdown_table(results), encoding="utf-8")
    js = out / f"{name}.json"
    js.write_text(_dumps(to_json(results, meta)) + "\n", encoding="utf-8")
    return [*paths, md, js]
