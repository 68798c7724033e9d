"""``ferryman scorer`` settings: flags, ``FERRYMAN_SCORER_*`` environment, validation."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from scorer import main


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    main.add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults() -> None:
    cfg = main.config_from_args(parse([]))
    assert (cfg.port, cfg.metrics_port, cfg.routers_dir, cfg.encoder_precision) == (
        50051,
        9090,
        Path("routers"),
        "int8",
    )
    assert cfg.routers is None and cfg.rows_per_run == 1
    assert (cfg.intra_op_threads, cfg.blas_threads) == (1, 1)


def test_environment_then_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRYMAN_SCORER_PORT", "6000")
    monkeypatch.setenv("FERRYMAN_SCORER_MAX_WAIT_MS", "5")
    monkeypatch.setenv("FERRYMAN_SCORER_ROUTERS", "mf, sw")
    monkeypatch.setenv("FERRYMAN_SCORER_ENCODER_PRECISION", "fp32")
    cfg = main.config_from_args(parse(["--port", "7000"]))
    assert cfg.port == 7000  # a flag beats the environment
    assert cfg.batching.max_wait_s == pytest.approx(0.005)
    assert cfg.routers == ("mf", "sw") and cfg.encoder_precision == "fp32"


def test_bad_values(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # a bad value from the environment names the variable (was "argument --workers: invalid int value: 'two'"),
    # and a choice is checked there too (was: FERRYMAN_SCORER_ENCODER_PRECISION=fp16 taken, then "encoder graph
    # missing; run `make setup`")
    for var, value, message in (
        ("WORKERS", "two", "FERRYMAN_SCORER_WORKERS='two': not a valid int"),
        ("ENCODER_PRECISION", "fp16", "FERRYMAN_SCORER_ENCODER_PRECISION='fp16': choose from int8, fp32"),
    ):
        monkeypatch.setenv(f"FERRYMAN_SCORER_{var}", value)
        with pytest.raises(SystemExit):
            parse([])
        assert message in capsys.readouterr().err
        monkeypatch.delenv(f"FERRYMAN_SCORER_{var}")
    with pytest.raises(SystemExit):
        parse(["--workers", "two"])
    assert "argument --workers: invalid int value: 'two'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="must not exceed one caller's queue"):
        main.config_from_args(parse(["--max-caller-cost", "1000", "--max-request-cost", "2000"]))
    with pytest.raises(ValueError, match="must not exceed the queue's"):
        main.config_from_args(parse(["--max-caller-cost", "1000", "--max-queue-cost", "500"]))
    with pytest.raises(ValueError, match=r"^workers must be >= 1, is 0$"):  # was the whole dataclass's repr
        main.config_from_args(parse(["--workers", "0"]))
    with pytest.raises(ValueError, match=r"blas threads \(0\)"):
        main.config_from_args(parse(["--blas-threads", "0"]))
