"""The ``ferryman`` command as a new user meets it: every ``--help``, a bare command, a missing extra.

Each ``--help`` is the real parser of the real command (``ferryman.cli.main``); the missing-extra case
runs ``ferryman`` in a subprocess whose import system refuses the lab's packages exactly as an
interpreter without them does (``ModuleNotFoundError`` naming the module), as in the serving
virtualenv that ``make run`` builds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import BENCHMARKS
from ferryman import cli
from ferryman.learn import SUBCOMMANDS
from lab.eval.calibrate import SUBCOMMANDS as CALIBRATE

REPO = Path(__file__).resolve().parents[1]
NESTED = {
    "learn": SUBCOMMANDS,
    "bench": BENCHMARKS,
    "train": {"mf": "", "crossfit": "", "loso": ""},
    "calibrate": CALIBRATE,
}


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        cli.main([*argv, "--help"])
    assert done.value.code == 0, argv
    return capsys.readouterr().out


def test_every_help_shows_real_defaults_only(capsys: pytest.CaptureFixture[str]) -> None:
    """No "(default: None)" beside a help that names the real default (``up --scorer-port``: "(50051)"), no
    "(default: )" or "(default: False)" for an option that is off; real defaults are still shown."""
    helps = {name: _help([name], capsys) for name in cli.COMMANDS}
    helps |= {f"{c} {s}": _help([c, s], capsys) for c, table in NESTED.items() for s in table}
    helps["data arena"] = _help(["data", "arena"], capsys)
    for command, text in helps.items():
        flat = " ".join(text.split())
        for noise in ("(default: None)", "(default: )", "(default: False)", "``"):  # ``: reST of a docstring
            assert noise not in flat, f"ferryman {command} --help: {noise}"
        assert "usage: ferryman" in flat, command
    up = " ".join(helps["up"].split())
    assert "scorer gRPC port (50051) --scorer-metrics-port" in up  # was "... (50051) (default: None)"
    assert "(default: routers)" in up and "(default: 127.0.0.1)" in up  # real defaults stay
    assert "(default: 0,100,300,1000)" in " ".join(helps["learn curve"].split())
    assert "its default) --router-weak" in " ".join(helps["learn curve"].split())  # was "(default: )" after it
    points = helps["calibrate points"]  # a subcommand beside `calibrate ARTIFACT ...`, its format laid out as written
    assert points.startswith("usage: ferryman calibrate points ") and "(default: 2000)" in points
    assert '\n  {"prompt": "Summarise this contract ...", "grades": {"small": 6, "medium": 8, "large": 9}}\n' in points


@pytest.mark.parametrize("command", ["learn", "bench"])
def test_a_bare_command_asks_for_its_subcommand_only(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main([command])
    assert done.value.code == 2
    err = capsys.readouterr().err
    noun = "SUBCOMMAND" if command == "learn" else "BENCHMARK"
    assert f"error: the following arguments are required: {noun}\n" in err  # was ": SUBCOMMAND, options"


_WITHOUT = """
import importlib.abc, json, sys
missing = set(json.loads(sys.argv[1]))

class Missing(importlib.abc.MetaPathFinder):  # what an interpreter without these packages raises
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in missing:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Missing())
from ferryman.cli import main
raise SystemExit(main(sys.argv[2:]))
"""


def _ferryman_without(missing: list[str], *argv: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", _WITHOUT, json.dumps(missing), *argv]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_a_lab_command_without_the_lab_extra_says_how_to_install_it(tmp_path: Path) -> None:
    """``ferryman train`` in the serving virtualenv (no torch) was a ModuleNotFoundError traceback; now exit 2
    with one line naming the package, its extra and ``make setup-lab``."""
    done = _ferryman_without(["torch", "matplotlib"], "train", "random", "--out", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr  # the random router needs none of them
    done = _ferryman_without(["torch", "matplotlib"], "train", "mf", "--out", str(tmp_path / "mf"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        "ferryman train: this needs the Python package 'torch', part of the 'lab' extra that the serving set-up "
        "(`make run`, `make setup`) leaves out; install it with `make setup-lab` (or: pip install -e '.[lab]')"
    )


def test_a_missing_module_of_no_extra_is_not_hidden() -> None:
    """Only the extras' packages get the install hint; any other missing module is a bug and keeps its traceback."""
    assert cli.missing_extra(ModuleNotFoundError(name="matplotlib.pyplot")) == "lab"
    assert cli.missing_extra(ModuleNotFoundError(name="torch")) == "lab"
    assert cli.missing_extra(ModuleNotFoundError(name="onnx_ir")) == "lab"
    assert cli.missing_extra(ModuleNotFoundError(name="pytest")) == "dev"
    assert cli.missing_extra(ModuleNotFoundError(name="numpy")) is None
    assert cli.missing_extra(ModuleNotFoundError(name="not_a_module")) is None
    assert cli.missing_extra(ModuleNotFoundError()) is None
    done = _ferryman_without(["numpy"], "learn", "versions", "--router-dir", "routers/mf")
    assert done.returncode == 1 and "Traceback" in done.stderr and "No module named 'numpy'" in done.stderr


def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """Was: `ferryman learn report ... | head -4` ended in a BrokenPipeError traceback once head had its lines."""
    keys = tmp_path / "keys"
    keys.write_text("".join(f"key-{i}\n" for i in range(50_000)))
    cmd = [sys.executable, "-m", "ferryman", "learn", "tenant-id"]
    with keys.open("rb") as stdin:
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"t-")
    proc.stdout.close()  # the reader goes away while ferryman still writes
    assert proc.wait(60) == 141
    assert proc.stderr.read() == b""
