"""Serving never needs torch: every serving module imports, and ``ferryman build`` builds, with torch blocked.

A subprocess installs an import hook that refuses (and records) torch, transformers and
sentence-transformers, imports every module of the serving packages, then runs ``ferryman build
all`` (the encoder and the shipped BERT router's graphs) and scores with what it built. This
checks at run time what ``make lint``'s import contracts check in the source.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from ferryman import paths

SHIPPED = paths.routers_dir().resolve()  # the committed routers ($FERRYMAN_ROUTERS_DIR or ./routers)
BLOCKED = ("torch", "transformers", "sentence_transformers")
SERVING_PACKAGES = ("ferryman", "scorer", "gateway")  # the lab (lab/) is the only place torch may be imported

_SCRIPT = """
import importlib, importlib.abc, json, pkgutil, sys
from pathlib import Path

blocked, packages, out_dir, routers_dir = json.loads(sys.argv[1])
attempts = []

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            attempts.append(name)
            raise ImportError(f"{name} is blocked: serving must not import it")
        return None

sys.meta_path.insert(0, Refuse())

def walk(name):
    module = importlib.import_module(name)
    yield name
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        sub = f"{name}.{info.name}"
        if info.name != "__main__":
            yield from walk(sub)

imported = [m for p in packages for m in walk(p)]
from ferryman.cli import main
from scorer.core import ScorerCore, ScoreQuery
enc = Path(out_dir) / "encoder"
rc = main(["build", "all", "--encoder-dir", str(enc), "--routers-dir", routers_dir])
core = ScorerCore.load(Path(routers_dir), enc)
score = core.score([ScoreQuery("bert", "Prove that there are infinitely many primes.")])[0].strong_win_rate
print(json.dumps({"imported": imported, "attempts": attempts, "rc": rc, "score": score,
                  "torch_loaded": [m for m in sys.modules if m.split(".")[0] in blocked]}))
"""


def test_serving_imports_and_builds_with_torch_blocked(tmp_path: Path) -> None:
    routers = tmp_path / "routers"
    for name in ("bert", "random"):
        shutil.copytree(SHIPPED / name, routers / name, ignore=shutil.ignore_patterns("*.onnx"))
    args = json.dumps([BLOCKED, SERVING_PACKAGES, str(tmp_path), str(routers)])
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["attempts"] == [] and report["torch_loaded"] == []
    imported = set(report["imported"])
    # the entry points `make run` starts, and the builder it runs first
    assert {"scorer.main", "scorer.server", "scorer.score_cli", "gateway.main", "ferryman.up"} <= imported
    assert {"scorer.graphs.cli", "scorer.graphs.build", "scorer.graphs.bert_graph"} <= imported
    assert report["rc"] == 0 and 0.0 < report["score"] < 1.0
    for f in ("model.fp32.onnx", "model.int8.onnx", "model.int8.unpadded.onnx", "tokenizer.json", "encoder.json"):
        assert (tmp_path / "encoder" / f).is_file(), f
    assert {p.name for p in (routers / "bert").glob("*.onnx")} == {"model.int8.onnx", "model.int8.unpadded.onnx"}
