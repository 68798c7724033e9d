"""A slice of ``ferryman bench scorer``'s length table, so CI re-checks the command that makes the published figures."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench.prompts import BUCKETS, length_bucket, prompt_mix
from lab.data.benchmarks import DataError, default_data_dir

ROOT = Path(__file__).resolve().parents[2]


def _data_dir() -> Path:
    try:
        return default_data_dir()
    except DataError:
        pytest.skip("public data not found")


def test_length_buckets() -> None:
    assert [length_bucket(n) for n in (1, 32, 33, 128, 129, 256, 257, 2048, 2049)] == [
        "<=32",
        "<=32",
        "33-128",
        "33-128",
        "129-256",
        "129-256",
        "257-2k",
        "257-2k",
        ">2k",
    ]
    assert BUCKETS[-1][0] == ">2k"


def test_prompt_mix_is_seeded_and_has_both_kinds() -> None:
    data = _data_dir()
    a, b = prompt_mix(data, 40, long_share=0.25), prompt_mix(data, 40, long_share=0.25)
    assert a == b
    kinds = [p.kind for p in a]
    assert kinds.count("long-context") == 10 and kinds.count("arena") == 30
    assert all(2_000 <= len(p.text) <= 96_000 + 2 for p in a if p.kind == "long-context")


def test_length_table_slice(test_routers_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """This checkout against itself as the baseline: every bucket present, scores unchanged."""
    _data_dir()
    from bench import scorer

    parser = argparse.ArgumentParser()
    scorer.add_arguments(parser)
    options = ["--skip-throughput", "--mix-size", "24", "--rounds", "1", "--length-routers", "mf,bert"]
    options += ["--windows", "64"]
    args = parser.parse_args([*options, "--routers-dir", str(test_routers_dir), "--baseline-dir", str(ROOT)])
    assert scorer.run(args) == 0
    out = capsys.readouterr().out
    assert "router mf (window " in out and "router bert (window " in out
    assert out.count("win rates, this vs baseline: max |delta| 0 over 24 prompts") == 2
    assert "router mf-w64 (window 64 tokens" in out and "router bert-w64 (window 64 tokens" in out
    assert ">2k" in out


def test_steady_slice(test_routers_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A few seconds of ``ferryman bench steady`` on small routers: every request accounted for, every fallback
    counted three ways, both heavy requests answered (the BatchScore scored, the oversized Score refused)."""
    data = _data_dir()
    from bench import steady

    parser = argparse.ArgumentParser()
    steady.add_arguments(parser)
    options = ["--seconds", "4", "--rate", "5", "--heavy-at", "0.5", "--batch-size", "16", "--messages", "1100000"]
    options += ["--mix-size", "40", "--deadline-ms", "3000", "--provider-delay-ms", "1"]
    args = parser.parse_args([*options, "--routers-dir", str(test_routers_dir), "--data-dir", str(data)])
    steady.run(args)  # the latency targets depend on the machine; what is checked below does not
    out = capsys.readouterr().out
    assert "requests: sent 20, answered 20" in out and "lost 0" in out
    assert "every fallback logged and counted" in out and "PASS" in out.split("every fallback logged and counted")[1]
    assert "BatchScore: sent at" in out and "OK after" in out and "16 results" in out
    assert "Score, many messages:" in out and "INVALID_ARGUMENT" in out and "the limit is 2,097,152" in out
