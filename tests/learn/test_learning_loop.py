"""The learning loop end to end on loopback (a short ``ferryman bench learning-loop``).

Real processes: fake strong, weak and judge providers, a scorer watching its routers' version
pointer, three gateways (learning off, its twin, shadowing into SQLite). The store fills, is
exported, a candidate is retrained and promoted while clients call the gateway, fresh prompts are
decided by the new version, and a rollback follows, again under load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ferryman.cli import main


def test_shadow_export_retrain_promote_rollback_under_load(tmp_path: Path) -> None:
    # The base is the small untrained MF test artifact: the judged traffic has a clear improvement to
    # teach it, so the 95 % promotion gate passes on a short run. The shipped mf's length head already
    # ranks this traffic well; its candidate clears the gate on some short runs only (docs/learning.md).
    out = tmp_path / "loop.json"
    argv = ["bench", "learning-loop", "--requests", "600", "--warmup", "20", "--rounds", "2", "--concurrency", "4"]
    argv += ["--rate", "1.0", "--after", "150", "--provider-delay-ms", "5", "--reload-interval-s", "0.2"]
    argv += ["--hold-s", "1", "--bootstrap", "200", "--base", "untrained", "--min-judged", "1000"]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--json", str(out)]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["cpu_layout"]["layout"] == "shared"  # the default: every process on every CPU
    assert result["export_rows"] >= 1000 and result["candidate"] == "v0001" and result["promoted"]
    for step, sequence in (("promote_load", ["base", "v0001"]), ("rollback_load", ["v0001", "base"])):
        load = result[step]
        assert load["failed"] == 0 and load["answered"] == load["sent"] > 0, load  # no call failed
        assert load["version_sequence"] == sequence  # decisions name the version that scored them
    after = result["after"]
    assert after["judged"] >= 50 and set(after["versions"]) == {"v0001"}
    assert after["router_apgr_live"] > after["router_apgr_base_same_prompts"]  # fresh prompts, never trained on
    clients = [row for row in result["latency"]["rows"] if "path" in row]
    assert {row["path"] for row in clients} == {"off", "off-twin", "shadow"} and all(r["n"] == 600 for r in clients)
    # The shared processes' CPU is counted per path: the shadow path's includes its shadow and judge calls,
    # which land on the rig (fake providers and judge), split from the scorer's (the product's).
    shared = {row["path"]: row["shared_cpu_ms_per_request"] for row in clients}
    assert shared["shadow"] > shared["off"] > 0, shared
    # The shadow path asks the scorer for nothing more: one Score per client request on every path (a call
    # that missed its deadline under load may land in the next path's count, hence not exactly 1).
    assert all(row["score_calls_per_request"] == pytest.approx(1.0, abs=0.01) for row in clients), clients
    rig = {row["path"]: row["rig_cpu_ms_per_request"] for row in clients}
    scorer = {row["path"]: row["scorer_cpu_ms_per_request"] for row in clients}
    assert rig["shadow"] > rig["off"] > 0 and min(scorer.values()) > 0, (rig, scorer)
    assert all(abs(shared[p] - rig[p] - scorer[p]) < 1e-9 for p in shared)


def test_the_summary_says_a_rollback_was_skipped_when_nothing_was_promoted(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.learning_loop import _summary

    load = {"sent": 10, "answered": 10, "failed": 0, "version_sequence": ["base"]}
    results: dict[str, Any] = {
        "export_rows": 800,
        "candidate": "v0001",
        "promoted": False,
        "promote_load": load,
        "rolled_back": None,
        "rollback_load": {"sent": 0, "answered": 0, "failed": 0, "version_sequence": []},
        "after": {"judged": 400, "versions": {"base": 400}, "router_apgr_live": 0.8},
        "wall_s": 1.0,
    }
    results["after"]["router_apgr_base_same_prompts"] = 0.8
    _summary(results)
    lines = [line for line in capsys.readouterr().out.splitlines() if "rollback" in line]
    assert lines == ["  rollback: skipped (nothing was promoted)"]
    results |= {"promoted": True, "rolled_back": False}
    _summary(results)
    assert "rollback: FAILED; under load 0 sent" in capsys.readouterr().out
