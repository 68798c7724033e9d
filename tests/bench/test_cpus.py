"""harness.cpus: the learning benchmarks' CPU layouts (shared, or the product split from the rig and client)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ferryman.cli import main
from harness.cpus import CpuLayout, CpuLayoutError, cpus_allowed, format_cpus, parse_cpus
from harness.processes import children

TWO_CPUS = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="a split layout needs two usable CPUs")
FOUR = frozenset(range(4))


def test_cpu_lists_parse_as_taskset_writes_them() -> None:
    assert parse_cpus("1", FOUR) == {1}
    assert parse_cpus("0-2", FOUR) == {0, 1, 2}
    assert parse_cpus("0, 2-3", FOUR) == {0, 2, 3}
    assert format_cpus({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("x", "is not a CPU list"),
        ("", "is not a CPU list"),
        ("0,,1", "is not a CPU list"),
        ("3-1", "runs backwards"),
        ("2-5", "CPU 4-5 is not one this process may use (0-3)"),
    ],
)
def test_bad_cpu_lists_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(CpuLayoutError, match=says.replace("(", r"\(").replace(")", r"\)")):
        parse_cpus(text, FOUR)


@pytest.mark.parametrize(
    ("product", "rig", "says"),
    [
        ({0}, None, "give both --product-cpus and --rig-cpus, or neither"),
        ({0, 1}, {1, 2}, "share CPU 1"),
        (set(), {1}, "at least one CPU"),
    ],
)
def test_layouts_that_do_not_split_are_refused(product: set[int], rig: set[int] | None, says: str) -> None:
    with pytest.raises(CpuLayoutError, match=says):
        CpuLayout(frozenset(product), None if rig is None else frozenset(rig))


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--product-cpus", "0"], "give both --product-cpus and --rig-cpus"),
        (["--product-cpus", "0", "--rig-cpus", "0"], "share CPU 0"),
        (["--product-cpus", "0", "--rig-cpus", "4096"], "CPU 4096 is not one this process may use"),
        (["--rig-cpus", "one"], "argument --rig-cpus: 'one' is not a CPU list"),
    ],
)
@pytest.mark.parametrize("bench", ["learning", "learning-loop"])
def test_both_benchmarks_refuse_a_bad_layout_with_the_reason(
    bench: str, argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", bench, *argv])
    assert says in f"{exc.value.code} {capsys.readouterr().err}"


# Starts a child from another thread (as the gateway starts its learning worker), prints both pids.
_PARENT = """
import subprocess, sys, threading, time
def start():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    print(child.pid, flush=True)
threading.Thread(target=start).start()
time.sleep(30)
"""


@TWO_CPUS
def test_processes_started_for_the_product_and_their_children_run_on_its_cpus() -> None:
    first, second = sorted(os.sched_getaffinity(0))[:2]
    layout = CpuLayout(frozenset({first}), frozenset({second}))
    mine = os.sched_getaffinity(0)
    with layout.product_spawns():
        parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE)
    try:
        assert os.sched_getaffinity(0) == mine  # the starting thread is unpinned again
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert cpus_allowed(parent.pid) == {first} and cpus_allowed(child) == {first}
        assert layout.check({"product": [parent.pid, child]}) == {
            "product": {parent.pid: str(first), child: str(first)}
        }
        with pytest.raises(CpuLayoutError, match=f"rig process {parent.pid} runs on CPU {first}, not {second}"):
            layout.check({"rig": [parent.pid]})
    finally:
        for pid in children(parent.pid):
            subprocess.run(["kill", "-9", str(pid)], check=False)
        parent.kill()
        parent.wait(10)


@TWO_CPUS
def test_enter_rig_pins_every_thread_of_the_process_already_running() -> None:
    first, second = sorted(os.sched_getaffinity(0))[:2]
    # in a child: pinning the test process itself would pin the rest of the session
    code = f"""
import os, threading, time
from pathlib import Path
from harness.cpus import CpuLayout
threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
CpuLayout(frozenset({{{first}}}), frozenset({{{second}}})).enter_rig()
print(sorted({{frozenset(os.sched_getaffinity(int(t.name))) for t in Path("/proc/self/task").iterdir()}}, key=sorted))
print(len(list(Path("/proc/self/task").iterdir())))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == f"[frozenset({{{second}}})]" and int(out[1]) >= 2


@TWO_CPUS
def test_the_learning_benchmark_runs_product_and_rig_where_asked(tmp_path: Path) -> None:
    first, second = sorted(os.sched_getaffinity(0))[:2]
    out = tmp_path / "learning.json"
    argv = [sys.executable, "-m", "ferryman", "bench", "learning", "--requests", "30", "--warmup", "5"]
    argv += ["--rounds", "1", "--concurrency", "2", "--provider-delay-ms", "5", "--bootstrap", "50"]
    argv += ["--product-cpus", str(first), "--rig-cpus", str(second), "--max-queued", "32", "--no-worker-sched-idle"]
    argv += ["--json", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"CPU layout split (product: gateways, learning workers, scorer on CPU {first};" in proc.stdout
    assert "shadow rate 0.2, max_concurrent 16, max_queued 32; learning worker at nice 10;" in proc.stdout
    result = json.loads(out.read_text())
    assert result["settings"] == {
        "sample_rate": 0.2,
        "max_concurrent": 16,
        "max_queued": 32,
        "worker_sched_idle": False,
    }
    clients = [row for row in result["rows"] if "path" in row]
    assert [row["score_calls_per_request"] for row in clients] == pytest.approx([1.0] * 3, abs=0.05)  # at the scorer
    layout = result["cpu_layout"]
    # product: the scorer, three gateways, the shadow gateway's learning worker and its multiprocessing resource
    # tracker; rig: the three fakes and the client
    assert layout == {
        "layout": "split",
        "product_cpus": str(first),
        "rig_cpus": str(second),
        "observed": {"product": {"processes": 6, "cpus": [str(first)]}, "rig": {"processes": 4, "cpus": [str(second)]}},
    }
