"""The learning benchmarks' shadow settings: the flags, what they put in the shadow gateway's config, and
what the header line says ran (a run's JSON carries the same ``settings``: tests/bench/test_cpus.py)."""

from __future__ import annotations

import argparse

import pytest

from bench.learning import add_worker_arguments, describe_shadow, learning_section, shadow_settings
from ferryman.cli import main


@pytest.mark.parametrize(("value", "says"), [("-1", "-1 is negative"), ("many", "'many' is not a whole number")])
@pytest.mark.parametrize("bench", ["learning", "learning-loop"])
def test_both_benchmarks_refuse_a_bad_max_queued_with_the_reason(
    bench: str, value: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["bench", bench, "--max-queued", value])
    assert f"argument --max-queued: {says}" in capsys.readouterr().err


def test_the_shadow_gateway_runs_with_the_settings_the_header_names() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=0.2)
    add_worker_arguments(parser)
    settings = shadow_settings(parser.parse_args(["--max-queued", "48", "--worker-sched-idle"]))
    section = learning_section(settings, "sqlite://x.db", feedback={"enabled": True})
    assert section["shadow"] == {
        "sample_rate": 0.2,
        "max_concurrent": 16,
        "max_queued": 48,
        "daily_budget_usd": 1000.0,
        "timeout_s": 30,
    }
    assert section["worker_sched_idle"] is True and section["feedback"] == {"enabled": True}
    assert (
        describe_shadow(settings)
        == "shadow rate 0.2, max_concurrent 16, max_queued 48; learning worker at nice 10 and SCHED_IDLE"
    )
    defaults = shadow_settings(parser.parse_args([]))  # the product's defaults
    assert defaults["max_queued"] == 48 and defaults["worker_sched_idle"]
    niceness_only = shadow_settings(parser.parse_args(["--max-queued", "0", "--no-worker-sched-idle"]))
    assert niceness_only["max_queued"] == 0 and not niceness_only["worker_sched_idle"]
