"""``ferryman calibrate points``: the graded-prompts file and its errors (the fit's round trip through a real
gateway is ``tests/gateway/test_points_round_trip.py``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from ferryman.cli import main
from gateway.config import load_config
from gateway.tiers import TierConfig, Tiers, relative_costs
from lab.data.report import DataError
from lab.eval.points import check_pasted, fit, points_yaml, read_graded
from lab.eval.tier_metrics import HullPoint

TIERS = Tiers([TierConfig("small", ("gpt-4o-mini",), "", 0), TierConfig("large", ("gpt-4o", "claude"), "", 1)])
GOOD = {"prompt": "hello", "grades": {"small": 6, "large": 8}}


def _write(tmp_path: Path, rows: list[object]) -> Path:
    path = tmp_path / "graded.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


BAD_ROWS = [
    ('{"prompt": "x", "grades": {"small": 1', "line 2: not valid JSON"),
    ([1, 2], "line 2: expected an object"),
    ({"grades": {"small": 1, "large": 2}}, 'line 2: give exactly one of "prompt"'),
    ({"prompt": "x", "messages": [], "grades": {"small": 1, "large": 2}}, 'line 2: give exactly one of "prompt"'),
    ({"prompt": 3, "grades": {"small": 1, "large": 2}}, 'line 2: "prompt" must be text, got int'),
    ({"prompt": "  ", "grades": {"small": 1, "large": 2}}, "line 2: no text to route on"),
    ({"messages": "hi", "grades": {"small": 1, "large": 2}}, 'line 2: "messages" must be a list'),
    ({"messages": [{"role": "user"}], "grades": {"small": 1}}, r"line 2: messages\[0\] must be"),
    (
        {"messages": [{"role": "assistant", "content": "hi"}], "grades": {"small": 1, "large": 2}},
        "line 2: no text to route on",
    ),
    ({"prompt": "x", "grades": [1, 2]}, 'line 2: "grades" must be an object'),
    ({"prompt": "x"}, 'line 2: "grades" must be an object'),
    (
        {"prompt": "x", "grades": {"small": "7", "large": 2}},
        r"""line 2: grades\['small'\] must be a finite number, got "7\"""",
    ),
    ({"prompt": "x", "grades": {"small": True, "large": 2}}, r"grades\['small'\] must be a finite number, got true"),
    ({"prompt": "x", "grades": {"small": 1, "gpt-4o-mini": 1, "large": 2}}, "line 2: tier 'small' is graded twice"),
]


@pytest.mark.parametrize(("row", "message"), BAD_ROWS)
def test_a_malformed_row_is_refused_naming_its_line(tmp_path: Path, row: object, message: str) -> None:
    path = _write(tmp_path, [GOOD, row, GOOD])
    with pytest.raises(DataError, match=message) as err:
        read_graded(path, TIERS)
    assert str(err.value).startswith(f"{path} line 2: ")


def test_rows_missing_a_tier_are_skipped_and_counted(tmp_path: Path) -> None:
    rows: list[object] = [
        GOOD,
        "",  # blank lines are not rows
        {"prompt": "only small", "grades": {"small": 5}},
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "an answer"},
                {"role": "user", "content": "the follow-up"},
            ],
            "grades": {"gpt-4o-mini": 4, "gpt-4o": 9.5, "some-other-model": 1},  # by first model; others ignored
        },
        {"prompt": "graded by the second model of large only", "grades": {"small": 5, "claude": 7}},
    ]
    graded = read_graded(_write(tmp_path, rows), TIERS)
    assert graded.rows == 4
    assert [(p.line, p.text, p.grades) for p in graded.prompts] == [
        (1, "hello", (6.0, 8.0)),
        (4, "the follow-up", (4.0, 9.5)),  # the last user turn, as the gateway scores it
    ]
    assert dict(graded.missing) == {"small": 0, "large": 2}
    assert graded.summary(Path("g.jsonl")) == (
        "g.jsonl: 4 rows, 2 graded for every tier; 2 skipped for a missing grade (rows without: large 2)"
    )


def test_a_file_grading_no_tier_fully_says_which_keys_it_needs(tmp_path: Path) -> None:
    path = _write(tmp_path, [{"prompt": "x", "grades": {"gpt-4": 9, "small": 2}}])
    with pytest.raises(
        DataError, match=r"no row grades every tier .keys: 'small' or 'gpt-4o-mini', 'large' or 'gpt-4o'"
    ):
        read_graded(path, TIERS)


def test_points_yaml_keeps_costs_rising_and_thresholds_exact() -> None:
    points = [
        HullPoint(0.01, 5.0, tier=0),
        HullPoint(0.12345641, 6.0, threshold=0.123456789012345),
        HullPoint(0.12345649, 6.1, threshold=0.2),  # equal to six decimals: written exactly
        HullPoint(1.0, 8.0, tier=1),
    ]
    block = points_yaml(points, TIERS, 0.5, ["a header"])
    assert block.splitlines()[:3] == ["# a header", "cost_share: 0.5", "operating_points:"]
    assert "  - {cost: 0.12345641, threshold: 0.123456789012345}" in block
    short = points_yaml([points[0], points[1], points[3]], TIERS, None, [])
    assert short.splitlines() == [
        "operating_points:",
        "  - {cost: 0.01, tier: small}",
        "  - {cost: 0.123456, threshold: 0.123456789012345}",
        "  - {cost: 1.0, tier: large}",
    ]


def test_the_command_refuses_bad_input_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped configuration (two tiers, mf policies), before any scoring: exit 2 and what is wrong."""
    graded = _write(tmp_path, [GOOD, "not json"])
    base = ["calibrate", "points", "--config", "config/gateway.yaml", "--graded", str(graded), "--quiet"]
    assert main([*base, "--policy", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ferryman calibrate points: policies.nope: no such policy (policies: ferryman-balanced")
    assert main([*base, "--policy", "ferryman-balanced"]) == 2
    err = capsys.readouterr().err
    assert err == f"ferryman calibrate points: {graded} line 2: not valid JSON (Expecting value, column 1)\n"
    assert main([*base[:-3], "--graded", str(tmp_path / "absent.jsonl"), "--policy", "ferryman-balanced"]) == 2
    assert "cannot read graded prompts" in capsys.readouterr().err


def test_too_few_prompts_for_two_halves_are_refused() -> None:
    rng = np.random.default_rng(0)
    scores, quality = rng.uniform(size=(12, 1)), rng.uniform(1, 9, size=(12, 2))
    with pytest.raises(
        DataError, match=r"12 graded prompts split into halves of \d+ and \d+: the held-out check needs"
    ):
        fit(scores, quality, np.array([0.1, 1.0]), "cost_aware", [f"prompt {i}" for i in range(12)], 10)


def test_the_block_is_checked_in_place_of_a_dollar_target(tmp_path: Path) -> None:
    """A cost_per_request_usd policy (with expected_tokens) takes the block in place of its target: the check
    kept the dollar target beside the block's cost_share and refused a paste that loads ('... not both')."""
    data = yaml.safe_load(Path("config/gateway.yaml").read_text(encoding="utf-8"))
    data["calibration"] = {"online": True}
    kept = {"router": "mf", "scorer_down_tier": "strong"}
    data["policies"]["ferryman-balanced"] = kept | {
        "cost_per_request_usd": 0.002,
        "expected_tokens": {"input": 300, "output": 200},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    config = load_config(path)
    weak = relative_costs(config.tiers, config.models)[0]
    block = points_yaml([HullPoint(weak, 5.0, tier=0), HullPoint(1.0, 8.0, tier=1)], config.tiers, 0.3, [])
    check_pasted(path, "ferryman-balanced", block)
    # what the check stands for: the block pasted in place of the dollar target loads
    data["policies"]["ferryman-balanced"] = kept | yaml.safe_load(block)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert load_config(path).policies["ferryman-balanced"].cost_share == 0.3


def test_unwritable_out_or_plot_is_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Was a traceback (FileNotFoundError from matplotlib's savefig or write_text, exit 1) after the whole fit."""
    graded = _write(tmp_path, [GOOD])
    base = ["calibrate", "points", "--config", "config/gateway.yaml", "--policy", "ferryman-balanced", "--quiet"]
    missing = tmp_path / "no" / "such" / "points.png"
    assert main([*base, "--graded", str(graded), "--plot", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"ferryman calibrate points: --plot {missing}: there is no directory {missing.parent}; "
        "create it or give another path\n"
    )
    assert main([*base, "--graded", str(graded), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"ferryman calibrate points: --out {tmp_path}: is a directory; give a file name\n"


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [("--batch-size", "0", "0 is below 1"), ("--threads", "0", "0 is below 1"), ("--bootstrap", "-5", "-5 is below 0")],
)
def test_counts_below_their_least_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    """Were accepted: --batch-size 0 and --threads 0 ended the scoring in a traceback (range() arg 3 must not be
    zero; the scorer config's ValueError), --bootstrap -5 printed intervals of no resample."""
    base = ["calibrate", "points", "--config", "config/gateway.yaml", "--policy", "ferryman-balanced"]
    with pytest.raises(SystemExit) as ended:
        main([*base, "--graded", str(_write(tmp_path, [GOOD])), flag, value])
    assert ended.value.code == 2
    assert f"ferryman calibrate points: error: argument {flag}: {message}" in capsys.readouterr().err


def test_the_check_does_not_repeat_the_loaders_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The configuration's WARNINGs (here: strong_share policies with three tiers and online calibration off) were
    printed when the command read it and again by the check of the pasted block; the check now says errors only."""
    data = yaml.safe_load(Path("config/gateway.yaml").read_text(encoding="utf-8"))
    data["tiers"] = [
        {"name": "small", "models": ["gpt-4o-mini"], "router_model": "mistralai/Mistral-7B-Instruct-v0.1"},
        {"name": "medium", "models": ["claude-haiku"], "router_model": "gpt-3.5-turbo-1106"},
        {"name": "large", "models": ["gpt-4o", "claude-sonnet"], "router_model": "gpt-4-1106-preview"},
    ]
    for policy in data["policies"].values():
        policy["scorer_down_tier"] = "large"
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    config = load_config(path)
    cost = relative_costs(config.tiers, config.models)
    points = [HullPoint(c, 5.0 + i, tier=i) for i, c in enumerate(cost)]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        check_pasted(path, "ferryman-economy", points_yaml(points, config.tiers, 0.3, []))
    assert [r.getMessage() for r in caplog.records] == []
    assert logging.getLogger("gateway").level == logging.NOTSET  # the loader's logging as it was
