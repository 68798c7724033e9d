"""Leave-one-source-out evaluation: each public source scored by routers that never saw it.

``ferryman eval --benchmark loso`` scores every source (``lab.data.sources.SOURCES``) with the
artifacts ``ferryman train loso`` wrote for it (``<loso-dir>/<source>/<router>/``: the recipe
trained without that source and without near copies of its prompts), through the scorer's
BatchScore RPC like every other evaluation. The metric fits the source:

- ``mmlu``, ``gsm8k``, ``arena-bench-v1``: APGR between the default pair (GPT-4-1106, Mixtral),
  whose quality is known on each prompt (correctness; GPT-4 grades on the 292 arena-bench prompts
  where both were graded);
- ``arena-human-1k``: its human battles are between 2023 models, never the default pair, so the
  router's default-pair strong-win rate of each prompt (how much it needs a strong model) must
  rank the battles that the stronger model of the pair won above those it lost: AUC over the
  773 decisive battles, the stronger model by leave-one-battle-out Bradley-Terry ratings of the
  source's own battles (:func:`lab.eval.metrics.orient_battles`); the 360 ties are left out.

Beside each router: the random router (mean and standard deviation over seeds) and two simple
baselines on the same training data: prompt length (characters; longer = stronger) and a
logistic regression (strong / tie / weak) on the frozen serving embeddings of every training
prompt with a default-pair outcome. Output: ``<out>/loso.md``, ``loso.json`` and ``loso.png``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lab.data.benchmarks import LabeledPrompt
from lab.data.embed_cache import embed_cached
from lab.data.sources import (
    ARENA_HUMAN,
    SOURCES,
    Source,
    SourcePrompt,
    artifact_name,
    held_out_keys,
    load_source,
    loso_dir,
)
from lab.eval.metrics import OrientedBattles, apgr, battle_auc, endpoints, orient_battles, routing_curve
from lab.eval.scoring import ScorerClient
from scorer.artifacts import MANIFEST_NAME, EncoderSpec, load_artifact
from scorer.encoder import Encoder

TITLES = {"mmlu": "MMLU", "gsm8k": "GSM8K", "arena-bench-v1": "arena-bench-v1", "arena-human-1k": "arena-human-1k"}
BASELINES = ("length", "logreg")
BASELINE_SOURCES = {
    "length": "prompt length in characters (longer = stronger); nothing trained",
    "logreg": "logistic regression (strong/tie/weak) on frozen MiniLM int8 embeddings of every training prompt "
    "with a default-pair outcome (MMLU, GSM8K, arena-bench-v1 grades) of the other sources",
}


@dataclass
class LosoSet:
    """One held-out source: the prompts a router scores and how its scores are judged."""

    source: str
    prompts: list[SourcePrompt]
    items: list[LabeledPrompt] = field(default_factory=list)  # APGR sources: prompts with both grades
    battles: OrientedBattles | None = None  # arena-human-1k

    @property
    def metric(self) -> str:
        return "AUC (stronger model won)" if self.battles is not None else "APGR"

    @property
    def n(self) -> str:
        if self.battles is not None:
            b = self.battles
            return f"{len(b.prompt)} decisive battles on {len(self.prompts)} prompts ({b.ties} ties left out)"
        return f"{len(self.items)} prompts"

    def value(self, scores: np.ndarray) -> float:
        """The source's metric of per-prompt scores (aligned with ``prompts``)."""
        if self.battles is not None:
            return battle_auc(scores, self.battles)
        index = {p.key: i for i, p in enumerate(self.prompts)}
        rows = np.array([index[it.key] for it in self.items])
        s = np.array([it.strong for it in self.items])
        w = np.array([it.weak for it in self.items])
        weak_q, strong_q = endpoints(s, w)
        return apgr(routing_curve(np.asarray(scores)[rows], s, w), weak_q, strong_q)


def build_sets(sources: dict[str, Source]) -> list[LosoSet]:
    """One set per source, in ``SOURCES`` order."""
    out = []
    for name in SOURCES:
        if name not in sources:
            continue
        src = sources[name]
        if name == ARENA_HUMAN:
            index = {p.prompt: i for i, p in enumerate(src.prompts)}
            b = src.battles
            oriented = orient_battles(
                [index[x.prompt] for x in b], [x.model_a for x in b], [x.model_b for x in b], [x.winner for x in b]
            )
            out.append(LosoSet(name, src.prompts, battles=oriented))
        else:
            out.append(LosoSet(name, src.prompts, items=src.graded()))
    return out


@dataclass
class LosoRow:
    """A router's (or baseline's) metric on one held-out source, or why there is none."""

    name: str
    kind: str  # router | baseline | random
    value: float | None = None
    spread: float | None = None  # random: standard deviation over seeds
    source: str = ""
    note: str = ""


@dataclass
class LosoResult:
    source: str
    title: str
    metric: str
    n: str
    rows: list[LosoRow] = field(default_factory=list)


def plan_artifacts(routers: Sequence[str], loso_root: Path, sources: Sequence[str]) -> dict[str, dict[str, Path]]:
    """``source -> router -> artifact dir`` for every LOSO artifact that exists."""
    out: dict[str, dict[str, Path]] = {}
    for source in sources:
        for router in routers:
            path = loso_dir(loso_root, source, router)
            if (path / MANIFEST_NAME).is_file():
                manifest = load_artifact(path, verify_hashes=False).manifest
                if manifest.name != artifact_name(router, source):
                    raise ValueError(
                        f"{path}: artifact is named {manifest.name!r}, not {artifact_name(router, source)!r}"
                    )
                out.setdefault(source, {})[router] = path
    return out


def baseline_scores(
    sets: Sequence[LosoSet], sources: dict[str, Source], data_dir: Path, encoder: Encoder, cache_dir: Path | None
) -> dict[str, dict[str, np.ndarray]]:
    """Per held-out source: each baseline's scores of its prompts, trained without it (and its near copies)."""
    from sklearn.linear_model import LogisticRegression  # eval-only dependency

    excluded = held_out_keys(data_dir, encoder, cache_dir)
    graded = [it for name in SOURCES if name in sources for it in sources[name].graded()]
    labels = np.sign(np.array([it.gain for it in graded])).astype(np.int64)
    emb = embed_cached([it.prompt for it in graded], encoder, cache_dir, progress=False)
    out: dict[str, dict[str, np.ndarray]] = {}
    for es in sets:
        keep = np.array([it.key not in excluded[es.source] for it in graded])
        model = LogisticRegression(C=1.0, max_iter=1000).fit(emb[keep], labels[keep])
        test = embed_cached([p.prompt for p in es.prompts], encoder, cache_dir, progress=False)
        proba = model.predict_proba(test)
        cls = list(model.classes_)
        out[es.source] = {
            "length": np.array([len(p.prompt) for p in es.prompts], dtype=np.float64),
            "logreg": proba[:, cls.index(1)] - proba[:, cls.index(-1)],
        }
    return out


def evaluate_loso(
    *,
    routers: Sequence[str],
    loso_root: Path,
    data_dir: Path,
    sources: Sequence[str],
    client_for: Callable[[dict[str, Path]], Any],
    random_artifacts: dict[str, Path],
    encoder: Encoder | None,
    cache_dir: Path | None,
    log: Callable[[str], None],
    progress: bool = True,
) -> list[LosoResult]:
    """Score every held-out source with its LOSO artifacts, random seeds and (with ``encoder``) baselines."""
    loaded = {name: load_source(name, data_dir) for name in sources}
    sets = build_sets(loaded)
    plans = plan_artifacts(routers, loso_root, sources)
    artifacts: dict[str, Path] = dict(random_artifacts)
    for per_router in plans.values():
        for router, path in per_router.items():
            artifacts[artifact_name(router, path.parent.name)] = path
    baselines = baseline_scores(sets, loaded, data_dir, encoder, cache_dir) if encoder is not None else {}
    results = []
    with client_for(artifacts) as client:
        assert isinstance(client, ScorerClient)
        for es in sets:
            log(f"{es.source}: {len(es.prompts)} prompts, {es.metric}")
            res = LosoResult(es.source, TITLES[es.source], es.metric, es.n)
            have = plans.get(es.source, {})
            jobs = [(artifact_name(r, es.source), p.key, p.prompt) for r in routers if r in have for p in es.prompts]
            scored = client.score(jobs, label=f"loso {es.source}", progress=progress) if jobs else np.array([])
            k = 0
            for r in routers:
                if r not in have:
                    note = f"missing: {loso_dir(loso_root, es.source, r)} (run `ferryman train loso`)"
                    res.rows.append(LosoRow(r, "router", note=note))
                    continue
                scores = scored[k * len(es.prompts) : (k + 1) * len(es.prompts)]
                k += 1
                manifest = load_artifact(have[r], verify_hashes=False).manifest
                where = f"`{have[r]}`, trained on {manifest.provenance.get('trained_on', '?')} without {es.source}"
                res.rows.append(LosoRow(r, "router", es.value(scores), source=where))
            if random_artifacts:
                rjobs = [(name, p.key, p.prompt) for name in random_artifacts for p in es.prompts]
                rs = client.score(rjobs, label=f"loso {es.source}: random", progress=progress)
                n = len(es.prompts)
                vals = [es.value(rs[i * n : (i + 1) * n]) for i in range(len(random_artifacts))]
                src = f"random router through the scorer, mean and standard deviation over {len(vals)} seeds"
                res.rows.append(LosoRow("random", "random", float(np.mean(vals)), float(np.std(vals)), src))
            for name, values in baselines.get(es.source, {}).items():
                res.rows.append(
                    LosoRow(f"baseline: {name}", "baseline", es.value(values), source=BASELINE_SOURCES[name])
                )
            results.append(res)
    return results


def mean_row(results: Sequence[LosoResult], name: str) -> float | None:
    """A row's mean over the sources (None when a source lacks it)."""
    values = [next((r.value for r in res.rows if r.name == name), None) for res in results]
    return None if not values or any(v is None for v in values) else float(np.mean(values))  # type: ignore[arg-type]


def markdown(results: Sequence[LosoResult]) -> str:
    """Table: one column per held-out source, one row per router / baseline / random, and the mean."""
    names = list(dict.fromkeys(r.name for res in results for r in res.rows))
    head = "| router | " + " | ".join(f"{res.title} ({res.metric})" for res in results) + " | mean |"
    lines = [head, "| --- |" + " ---: |" * (len(results) + 1)]
    for name in names:
        cells = []
        for res in results:
            row = next((r for r in res.rows if r.name == name), None)
            if row is None or row.value is None:
                cells.append("—")
            elif row.spread is not None:
                cells.append(f"{row.value:.3f} ± {row.spread:.3f}")
            else:
                cells.append(f"{row.value:.3f}")
        mean = mean_row(results, name)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'—' if mean is None else f'{mean:.3f}'} |")
    notes = [f"- **{res.title}**: {res.metric}, {res.n}" for res in results]
    missing = [f"- {res.title} / {r.name}: {r.note}" for res in results for r in res.rows if r.note]
    return "\n".join([*lines, "", *notes, *missing]) + "\n"


def to_json(results: Sequence[LosoResult], meta: dict[str, str]) -> dict[str, Any]:
    sets = []
    for res in results:
        rows = [
            {k: v for k, v in vars(r).items() if v not in (None, "")}
            | {"value": None if r.value is None else round(r.value, 6)}
            for r in res.rows
        ]
        sets.append({"source": res.source, "title": res.title, "metric": res.metric, "n": res.n, "rows": rows})
    return {"meta": meta, "sets": sets}


def plot(results: Sequence[LosoResult], path: Path) -> Path:
    """Grouped bars per held-out source; random as a band of ±2 standard deviations around its mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in dict.fromkeys(r.name for res in results for r in res.rows) if n != "random"]
    fig, ax = plt.subplots(figsize=(7.2, 4.2), dpi=80)
    width = 0.8 / max(len(names), 1)
    for j, res in enumerate(results):
        rnd = next((r for r in res.rows if r.name == "random"), None)
        if rnd is not None and rnd.value is not None and rnd.spread is not None:
            ax.fill_between(
                [j - 0.45, j + 0.45],
                rnd.value - 2 * rnd.spread,
                rnd.value + 2 * rnd.spread,
                color="grey",
                alpha=0.25,
                lw=0,
            )
            ax.hlines(rnd.value, j - 0.45, j + 0.45, color="grey", linestyle="--", lw=1)
        for i, name in enumerate(names):
            row = next((r for r in res.rows if r.name == name), None)
            if row is not None and row.value is not None:
                ax.bar(j - 0.4 + (i + 0.5) * width, row.value - 0.5, width, bottom=0.5, label=name if j == 0 else None)
    ax.set_xticks(range(len(results)), [f"{res.title}\n{res.metric}" for res in results], fontsize=8)
    ax.axhline(0.5, color="black", lw=0.6)
    ax.set_ylabel("APGR / AUC on the held-out source")
    ax.set_title("Leave one source out (grey: random ± 2 sd)", fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write(results: Sequence[LosoResult], out: Path, meta: dict[str, str], name: str = "loso") -> list[Path]:
    """``<name>.md``, ``<name>.json`` and ``<name>.png`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    md = out / f"{name}.md"
    header = ["# Ferryman leave-one-source-out evaluation", "", *[f"- {k}: {v}" for k, v in meta.items()], ""]
    md.write_text("\n".join(header) + "\n" + markdown(results), encoding="utf-8")
    js = out / f"{name}.json"
    js.write_text(json.dumps(to_json(results, meta), indent=1) + "\n", encoding="utf-8")
    return [md, js, plot(results, out / f"{name}.png")]


def default_encoder(encoder_dir: Path, threads: int) -> Encoder:
    """The serving int8 encoder at its default window (what the logistic-regression baseline embeds with)."""
    return Encoder(encoder_dir, precision="int8", spec=EncoderSpec(), threads=threads)
