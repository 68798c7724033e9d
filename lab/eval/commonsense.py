"""The common-sense suite as a measure: the share of easy/hard pairs a router orders correctly.

The pairs live with the tests (``tests/quality/commonsense_pairs.py``: written before any router
was scored on them, never trained or tuned on). ``tests/quality/test_commonsense.py`` asserts the
share each shipped router reaches (``SHIPPED_SHARES``); ``ferryman eval --benchmark commonsense``
writes ``<out>/commonsense.md`` and ``.json`` with every router's share, the pairs it gets wrong
and the prompt-length baseline (50 % by construction). A pair counts as ordered when the hard
prompt's strong-win rate is strictly higher than the easy one's.
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

#: The share of pairs issue #10 asks every shipped router to order.
TARGET_SHARE = 0.9
#: The share each shipped router reaches today (``make figures`` prints them; the test asserts them).
SHIPPED_SHARES = {"mf": 0.54, "sw": 0.50, "bert": 0.60}
PAIRS_FILE = Path("tests/quality/commonsense_pairs.py")


class PairLike(Protocol):
    @property
    def category(self) -> str: ...
    @property
    def easy(self) -> str: ...
    @property
    def hard(self) -> str: ...


def load_pairs(path: Path = PAIRS_FILE) -> tuple[PairLike, ...]:
    """``PAIRS`` of the suite file (a Python module kept with the tests; run from the repository root)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: common-sense suite not found (run from the repository root)")
    spec = importlib.util.spec_from_file_location("ferryman_commonsense_pairs", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"{path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.PAIRS)


@dataclass(frozen=True)
class Ordering:
    """How one router (or baseline) orders the suite."""

    name: str
    ordered: int
    total: int
    wrong: tuple[str, ...]  # the category of each pair it gets wrong

    @property
    def share(self) -> float:
        return self.ordered / self.total


def ordering(name: str, pairs: Sequence[PairLike], scores: Sequence[float] | np.ndarray) -> Ordering:
    """``scores`` are ``[easy_0, hard_0, easy_1, hard_1, ...]``; a pair is ordered when hard > easy."""
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (2 * len(pairs),):
        raise ValueError(f"expected {2 * len(pairs)} scores (easy, hard per pair), got {s.shape}")
    wrong = tuple(p.category for i, p in enumerate(pairs) if not s[2 * i + 1] > s[2 * i])
    return Ordering(name, len(pairs) - len(wrong), len(pairs), wrong)


def texts(pairs: Sequence[PairLike]) -> list[str]:
    """The prompts in the order ``ordering`` expects."""
    return [t for p in pairs for t in (p.easy, p.hard)]


def evaluate(
    routers: Sequence[str], pairs: Sequence[PairLike], score: Callable[[str, list[str]], np.ndarray]
) -> list[Ordering]:
    """Each router's ordering (``score(router, prompts)`` -> strong-win rates), then the length baseline."""
    prompts = texts(pairs)
    out = [ordering(r, pairs, score(r, prompts)) for r in routers]
    out.append(ordering("baseline: length", pairs, [float(len(t)) for t in prompts]))
    return out


def markdown(results: Sequence[Ordering]) -> str:
    lines = ["| router | ordered | share | pairs it gets wrong, by category |", "| --- | ---: | ---: | --- |"]
    for r in results:
        wrong = ", ".join(f"{c} {n}" for c, n in Counter(r.wrong).items()) or "none"
        lines.append(f"| {r.name} | {r.ordered}/{r.total} | {r.share:.0%} | {wrong} |")
    return "\n".join(lines) + "\n"


def write(results: Sequence[Ordering], out: Path, meta: dict[str, str]) -> list[Path]:
    """``<out>/commonsense.md`` and ``commonsense.json``."""
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "commonsense.md", out / "commonsense.json"
    header = ["# Ferryman common-sense suite", "", *[f"- {k}: {v}" for k, v in meta.items()], ""]
    md.write_text("\n".join(header) + "\n" + markdown(results), encoding="utf-8")
    rows = [asdict(r) | {"share": round(r.share, 6)} for r in results]
    js.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n", encoding="utf-8")
    return [md, js]
