"""A slice of ``ferryman bench faults`` (the 30 s load run of docs/gateway.md), short enough for CI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_faults_slice(tmp_path: Path) -> None:
    out = tmp_path / "faults.json"
    argv = [sys.executable, "-m", "ferryman", "bench", "faults", "--duration", "4", "--warmup", "1"]
    argv += ["--fail-rates", "0.2", "--concurrency", "4", "--json", str(out)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    [phase] = json.loads(out.read_text())
    assert phase["requests"] > 0 and phase["lost"] == 0 and phase["answered"] == phase["requests"]
    assert phase["breaker_open_s"] == 0  # 20 % of calls failing is far below the breaker's 50 % of requests
    assert set(phase["statuses"]) == {"200"}
