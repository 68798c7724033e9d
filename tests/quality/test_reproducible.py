"""The committed quality figures come from the code and artifacts as they stand.

Recomputes MT-Bench APGR of every shipped router (the 72 uncontaminated questions, scored by the
scoring plane that serves ``Score`` over ``routers/`` and the built encoder) and compares it with
``reports/eval.json``, which ``make figures`` writes. A difference beyond ``TOLERANCE`` means the
report is stale (an artifact, the encoder or the scoring changed without regenerating it) or that
scores depend on something they should not (as the CPU's int8 kernels did before 233503f).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ferryman import paths
from lab.data.benchmarks import default_data_dir, load_benchmark
from lab.eval.metrics import apgr, endpoints, routing_curve
from scorer.artifacts import MANIFEST_NAME
from scorer.core import ScoreQuery, ScorerCore
from scorer.routers import ROUTER_KINDS

TOLERANCE = 1e-3
REPORT = Path("reports/eval.json")
SHIPPED = [k for k in ROUTER_KINDS if k != "random" and (paths.routers_dir() / k / MANIFEST_NAME).is_file()]


def _reported() -> dict[str, float]:
    report = json.loads(REPORT.read_text(encoding="utf-8"))
    (mt,) = [s for s in report["sets"] if s["benchmark"] == "mt-bench"]
    return {r["name"]: float(r["apgr"]) for r in mt["rows"] if r["kind"] == "router"}


@pytest.fixture(scope="module")
def recomputed() -> dict[str, float]:
    items = load_benchmark("mt-bench", default_data_dir())
    strong = np.array([it.strong for it in items])
    weak = np.array([it.weak for it in items])
    weak_q, strong_q = endpoints(strong, weak)
    core = ScorerCore.load(paths.routers_dir(), paths.encoder_dir(), only=SHIPPED)
    out = {}
    for router in SHIPPED:
        scores = np.array([r.strong_win_rate for r in core.score([ScoreQuery(router, it.prompt) for it in items])])
        out[router] = apgr(routing_curve(scores, strong, weak), weak_q, strong_q)
    return out


def test_every_shipped_router_is_in_the_report() -> None:
    assert SHIPPED, "no shipped routers found"
    assert set(SHIPPED) <= set(_reported()), f"{REPORT} lacks MT-Bench rows for {set(SHIPPED) - set(_reported())}"


@pytest.mark.parametrize("router", SHIPPED)
def test_mt_bench_apgr_matches_the_committed_report(recomputed: dict[str, float], router: str) -> None:
    reported = _reported()[router]
    print(f"{router}: MT-Bench APGR recomputed {recomputed[router]:.4f}, reported {reported:.4f}")
    assert abs(recomputed[router] - reported) <= TOLERANCE, (
        f"{router}: MT-Bench APGR {recomputed[router]:.4f} here, {reported:.4f} in {REPORT}; "
        "regenerate the figures (`make figures`) or find what moved the scores"
    )
