"""The RouteLLM evaluation suite as golden labels: MMLU, GSM8K and MT-Bench.

Layout (``routellm/evals`` of the RouteLLM repository, and
``../shared/data/routellm-benchmarks``)::

    mmlu/responses/mmlu_<subject>.csv   prompt, <weak>, <strong>   (True/False = correct)
    gsm8k/gsm8k_responses.csv           prompt, <weak>, <strong>, <model>_response...
    mt_bench/question.jsonl             {question_id, category, turns: [t1, t2]}
    mt_bench/judgements.jsonl           {question_id, model, turn, score}   (GPT-4 grades 1-10)
    */contaminated_prompts.jsonl        {eval_prompt, ...}: prompts also in Arena training data

Each prompt becomes a :class:`LabeledPrompt` with the strong and weak model's
quality on it. As in RouteLLM's evaluation, an MT-Bench question is routed on
its first turn and its quality is the mean grade over both turns; a question is
contaminated when either turn is listed.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ferryman import paths
from lab.data.keys import prompt_key
from lab.data.records import read_csv, read_jsonl
from lab.data.report import DataError, LoadReport

STRONG = "gpt-4-1106-preview"
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
BENCHMARKS = ("mmlu", "gsm8k", "mt-bench")
#: The benchmarks whose correctness labels may be trained on (MT-Bench is evaluation-only).
GOLDEN_BENCHMARKS = ("mmlu", "gsm8k")
BENCHMARKS_SUBDIR = "routellm-benchmarks"
_DIRS = {"mmlu": "mmlu", "gsm8k": "gsm8k", "mt-bench": "mt_bench"}
_BOOL = {"true": 1.0, "1": 1.0, "false": 0.0, "0": 0.0}


@dataclass(frozen=True)
class LabeledPrompt:
    """A benchmark prompt with both models' quality on it."""

    key: str
    prompt: str
    benchmark: str
    group: str
    strong: float
    weak: float

    @property
    def gain(self) -> float:
        """Quality gained by calling the strong model instead of the weak one."""
        return self.strong - self.weak


def default_data_dir() -> Path:
    """``$FERRYMAN_DATA``, else ``../shared/data`` from the working directory (``ferryman.paths``)."""
    env = os.environ.get("FERRYMAN_DATA")
    path = paths.data_dir()
    if not path.is_dir():
        where = "$FERRYMAN_DATA" if env else "the default ../shared/data, from the working directory"
        raise DataError(
            f"{path}: data directory not found ({where}); pass --data-dir or set FERRYMAN_DATA "
            "(see docs/training.md, section Data, for where to get the public files)"
        )
    return path


def benchmarks_dir(data_dir: Path) -> Path:
    """Accept either the data root (containing ``routellm-benchmarks/``) or that folder itself."""
    nested = data_dir / BENCHMARKS_SUBDIR
    return nested if nested.is_dir() else data_dir


def _contaminated(folder: Path, enabled: bool) -> set[str]:
    if not enabled:
        return set()
    path = folder / "contaminated_prompts.jsonl"
    if not path.is_file():
        raise DataError(f"{path}: contamination list not found (pass drop_contaminated=False to keep every prompt)")
    out = set()
    for line, row in read_jsonl(path):
        if isinstance(row, str) or not isinstance(row.get("eval_prompt"), str):
            raise DataError(f"{path}:{line}: expected an object with a string 'eval_prompt'")
        out.add(row["eval_prompt"])
    return out


class _Keys:
    """Unique keys: ``prompt_key(prompt)``, with ``~n`` appended to the n-th repeat of a text."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = defaultdict(int)

    def __call__(self, text: str) -> str:
        base = prompt_key(text)
        n = self._seen[base]
        self._seen[base] += 1
        return base if n == 0 else f"{base}~{n}"


def _correctness_file(
    path: Path, benchmark: str, group: str, drop: set[str], keys: _Keys, max_bad_fraction: float
) -> tuple[list[LabeledPrompt], LoadReport]:
    report = LoadReport(path=path)
    out: list[LabeledPrompt] = []
    for line, row in read_csv(path, required=("prompt", WEAK, STRONG)):
        report.rows += 1
        if isinstance(row, str):
            report.add_bad(row, line)
            continue
        prompt = row["prompt"]
        strong, weak = _BOOL.get(row[STRONG].strip().lower()), _BOOL.get(row[WEAK].strip().lower())
        if not prompt.strip():
            report.add_bad("empty prompt", line)
        elif strong is None or weak is None:
            report.add_bad("correctness is not True/False", line)
        else:
            report.kept += 1
            if prompt not in drop:
                out.append(LabeledPrompt(keys(prompt), prompt, benchmark, group, strong, weak))
    report.check(max_bad_fraction)
    return out, report


def _mmlu(folder: Path, drop: set[str], max_bad: float, reports: list[LoadReport]) -> list[LabeledPrompt]:
    files = sorted((folder / "responses").glob("mmlu_*.csv"))
    if not files:
        raise DataError(f"{folder / 'responses'}: no mmlu_<subject>.csv files")
    keys = _Keys()
    out: list[LabeledPrompt] = []
    for path in files:
        items, report = _correctness_file(path, "mmlu", path.stem.removeprefix("mmlu_"), drop, keys, max_bad)
        out += items
        reports.append(report)
    return out


def _mt_bench(folder: Path, drop: set[str], max_bad: float, reports: list[LoadReport]) -> list[LabeledPrompt]:
    qpath, jpath = folder / "question.jsonl", folder / "judgements.jsonl"
    qreport, jreport = LoadReport(path=qpath), LoadReport(path=jpath)
    questions: dict[str, tuple[str, str, str]] = {}  # qid -> (first turn, category, second turn)
    for line, row in read_jsonl(qpath):
        qreport.rows += 1
        turns = row.get("turns") if isinstance(row, dict) else None
        if isinstance(row, str):
            qreport.add_bad(row, line)
        elif row.get("question_id") is None:
            qreport.add_bad("missing question_id", line)
        elif not (isinstance(turns, list) and turns and all(isinstance(t, str) and t.strip() for t in turns)):
            qreport.add_bad("turns missing or empty", line)
        else:
            qreport.kept += 1
            questions[str(row["question_id"])] = (turns[0], str(row.get("category") or "mt-bench"), turns[-1])
    qreport.check(max_bad)
    grades: dict[tuple[str, str], list[float]] = defaultdict(list)
    for line, row in read_jsonl(jpath):
        jreport.rows += 1
        if isinstance(row, str):
            jreport.add_bad(row, line)
            continue
        qid, model, score = str(row.get("question_id")), row.get("model"), row.get("score")
        if qid not in questions:
            jreport.add_bad("unknown question_id", line)
        elif isinstance(score, bool) or not isinstance(score, int | float) or score < 0:
            jreport.add_bad("missing or invalid score", line)
        else:
            jreport.kept += 1
            if model in (STRONG, WEAK):
                grades[(qid, str(model))].append(float(score))
    jreport.check(max_bad)
    reports += [qreport, jreport]
    keys = _Keys()
    out: list[LabeledPrompt] = []
    for qid, (first, category, last) in questions.items():
        if first in drop or last in drop:
            continue
        s, w = grades.get((qid, STRONG)), grades.get((qid, WEAK))
        if not s or not w:
            raise DataError(f"{jpath}: question {qid} has no grade for {STRONG if not s else WEAK}")
        out.append(LabeledPrompt(keys(first), first, "mt-bench", category, sum(s) / len(s), sum(w) / len(w)))
    return out


def load_benchmark(
    name: str,
    data_dir: Path,
    *,
    drop_contaminated: bool = True,
    max_bad_fraction: float = 0.5,
    reports: list[LoadReport] | None = None,
) -> list[LabeledPrompt]:
    """Labelled prompts of one benchmark (``mmlu``, ``gsm8k`` or ``mt-bench``).

    ``data_dir`` is ``.../routellm-benchmarks`` or the data root that contains it.
    Per-file load reports are appended to ``reports`` when given.
    """
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {', '.join(BENCHMARKS)}")
    folder = benchmarks_dir(data_dir) / _DIRS[name]
    if not folder.is_dir():
        raise DataError(f"{folder}: benchmark folder not found (is {data_dir} the routellm-benchmarks folder?)")
    drop = _contaminated(folder, drop_contaminated)
    sink: list[LoadReport] = [] if reports is None else reports
    if name == "mmlu":
        return _mmlu(folder, drop, max_bad_fraction, sink)
    if name == "mt-bench":
        return _mt_bench(folder, drop, max_bad_fraction, sink)
    items, report = _correctness_file(folder / "gsm8k_responses.csv", "gsm8k", "gsm8k", drop, _Keys(), max_bad_fraction)
    sink.append(report)
    return items


def load_golden(data_dir: Path) -> list[LabeledPrompt]:
    """Labelled prompts of every golden benchmark (MMLU, then GSM8K), contaminated ones removed."""
    return [it for name in GOLDEN_BENCHMARKS for it in load_benchmark(name, data_dir)]
