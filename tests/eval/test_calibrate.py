"""``ferryman calibrate``: thresholds per strong-call share, written into the manifest."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import grpc
import numpy as np
import pytest

from ferryman.cli import main
from ferryman.scorer.v1 import scorer_pb2, scorer_pb2_grpc
from harness.scorer import SAMPLE_PROMPTS, build_test_routers, scorer_in_thread
from lab.eval.calibrate import thresholds
from lab.eval.scoring import ScorerClient
from scorer.artifacts import load_artifact


def test_thresholds_by_hand() -> None:
    points = thresholds([0.9, 0.1, 0.5, 0.7], shares=(0.0, 0.25, 0.5, 0.75, 1.0))
    values = [p.threshold for p in points]
    assert values[0] > 0.9 and values[0] == pytest.approx(0.9)
    assert values[1:] == pytest.approx([0.8, 0.6, 0.3, 0.1])
    many = thresholds(np.linspace(0, 1, 57))
    assert len(many) == 101 and all(a.threshold >= b.threshold for a, b in itertools.pairwise(many))
    # Ties cannot be split: the threshold sits on the tied value.
    assert thresholds([0.5, 0.5, 0.5, 0.2], shares=(0.5,))[0].threshold == 0.5
    with pytest.raises(ValueError, match="at least 2 finite scores"):
        thresholds([0.3])
    with pytest.raises(ValueError, match="share must be in"):
        thresholds([0.3, 0.4], shares=(1.5,))


@pytest.fixture(scope="module")
def routers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_routers(tmp_path_factory.mktemp("calibrate") / "routers")


def _reference(tmp_path: Path) -> Path:
    path = tmp_path / "questions.jsonl"
    rows = [{"question_id": f"q{i}", "turns": ["context", p]} for i, p in enumerate(SAMPLE_PROMPTS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_calibrate_writes_manifest_and_the_scorer_serves_it(routers: Path, tmp_path: Path) -> None:
    reference = _reference(tmp_path)
    assert main(["calibrate", str(routers / "mf"), str(routers / "sw"), "--reference", str(reference), "--quiet"]) == 0
    cal = load_artifact(routers / "mf").manifest.calibration
    assert cal is not None and len(cal.points) == 101
    assert cal.reference.startswith(f"{tmp_path.name}/questions.jsonl: {len(SAMPLE_PROMPTS)} prompts")
    # Through a real scorer: the calibrated thresholds send the asked-for share of the reference strong.
    with scorer_in_thread(routers) as address:
        with ScorerClient(address, strong="", weak="") as client:
            scores = client.score([("mf", str(i), p) for i, p in enumerate(SAMPLE_PROMPTS)], progress=False)
        with grpc.insecure_channel(address) as channel:
            listed = scorer_pb2_grpc.ScorerServiceStub(channel).ListRouters(scorer_pb2.ListRoutersRequest(), timeout=30)
    for share in (0.1, 0.3, 0.5, 0.8):
        assert np.mean(scores >= cal.threshold_for(share)) == pytest.approx(share)
    served = {r.name: r for r in listed.routers}
    sw_cal = load_artifact(routers / "sw").manifest.calibration
    assert sw_cal is not None and len(served["sw"].calibration) == 101
    assert served["sw"].calibration_reference == sw_cal.reference


def test_calibrate_against_a_running_scorer_dry_run(
    routers: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (routers / "random" / "manifest.json").read_text()
    with scorer_in_thread(routers) as address:
        argv = ["calibrate", str(routers / "random"), "--reference", str(_reference(tmp_path)), "--scorer", address]
        assert main([*argv, "--dry-run", "--quiet"]) == 0
    assert "random: thresholds 10 %:" in capsys.readouterr().out
    assert (routers / "random" / "manifest.json").read_text() == before


def test_calibrate_bad_inputs(routers: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", str(tmp_path), "--reference", str(_reference(tmp_path))]) == 2
    assert "manifest not found" in capsys.readouterr().err
    one = tmp_path / "one.jsonl"
    one.write_text('{"question_id": 1, "turns": ["only"]}\n', encoding="utf-8")
    assert main(["calibrate", str(routers / "mf"), "--reference", str(one)]) == 2
    assert "need at least 2 distinct reference prompts" in capsys.readouterr().err


def test_calibrate_with_no_scorer_at_the_address_says_so(
    routers: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: a minute of silence, then a grpc.FutureTimeoutError traceback; now a note while waiting, then one line
    naming the address (`ferryman eval --scorer` shares the client, and its ValueError handling)."""
    from harness.processes import free_port
    from lab.eval import scoring

    monkeypatch.setattr(scoring, "READY_WAIT_S", 3.0)  # the wait, shortened; nothing listens on the port
    address = f"127.0.0.1:{free_port()}"
    argv = ["calibrate", str(routers / "random"), "--reference", str(_reference(tmp_path)), "--scorer", address]
    assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"waiting for the scorer at {address} (up to 3 s) ..." in err
    assert f"ferryman calibrate: no scorer answers at {address} (waited 3 s): start one there" in err
    with pytest.raises(scoring.ScorerUnreachableError, match="leave --scorer out"):
        ScorerClient(address, strong="", weak="")
