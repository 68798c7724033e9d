"""Pairwise battles: the Chatbot Arena 55k schema, and judge grades turned into battles.

The Arena schema (``lmsys-arena-human-preference-55k``, and the shared
``arena-bench-v1/battles.csv``) has one row per battle: ``id, model_a, model_b,
prompt`` (a JSON list of the user turns), ``response_a, response_b`` (unused
here) and the one-hot ``winner_model_a, winner_model_b, winner_tie``. A single
``winner`` column (``model_a``/``model_b``/``tie``/``tie (bothbad)``, as in
the older Arena conversation dumps) is accepted too.

Single-answer grades (MT-Bench / arena-hard style: a questions file and one
score per question and model) become every pairwise battle of the graded
models on each question: the higher grade wins, equal grades tie.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from lab.data.records import read_jsonl, read_records
from lab.data.report import LoadReport

Winner = Literal["model_a", "model_b", "tie"]
WINNER_COLUMNS: tuple[tuple[str, Winner], ...] = (
    ("winner_model_a", "model_a"),
    ("winner_model_b", "model_b"),
    ("winner_tie", "tie"),
)
_WINNER_NAMES: dict[str, Winner] = {
    "model_a": "model_a",
    "model_b": "model_b",
    "tie": "tie",
    "tie (bothbad)": "tie",
}
_TRUE = {"1", "1.0", "true"}
_FALSE = {"0", "0.0", "false", ""}


@dataclass(frozen=True)
class Battle:
    """One comparison of two models' answers to the same conversation."""

    id: str
    turns: tuple[str, ...]
    model_a: str
    model_b: str
    winner: Winner

    @property
    def prompt(self) -> str:
        """The last user turn: what the scorer scores by default."""
        return self.turns[-1]


def parse_turns(value: Any) -> tuple[str, ...] | str:
    """User turns from a JSON-list string or a list; a plain string is one turn.

    Returns the non-empty turns, or a reason string when the value is unusable.
    Null turns (the 55k file has a few) are dropped.
    """
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            if value.lstrip().startswith("["):
                return "prompt is not a JSON list of strings"
            decoded = value
        value = decoded if isinstance(decoded, list) else value
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        return "prompt is not a JSON list of strings"
    if any(t is not None and not isinstance(t, str) for t in value):
        return "prompt is not a JSON list of strings"
    turns = tuple(t for t in value if t is not None and t.strip())
    return turns if turns else "empty prompt"


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
        return bool(value) if value in (0, 1) else None
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    return None


def parse_winner(row: dict[str, Any]) -> Winner | str:
    """The winner from the one-hot columns or a ``winner`` column, or a reason string."""
    if "winner" in row and not any(c in row for c, _ in WINNER_COLUMNS):
        name = str(row["winner"] or "").strip().lower()
        return _WINNER_NAMES.get(name, "unknown winner value")
    if not all(c in row for c, _ in WINNER_COLUMNS):
        return "missing winner columns"
    flags = [_flag(row[c]) for c, _ in WINNER_COLUMNS]
    if any(f is None for f in flags) or sum(bool(f) for f in flags) != 1:
        return "unknown winner value"
    return next(w for (_, w), f in zip(WINNER_COLUMNS, flags, strict=True) if f)


def _text(row: dict[str, Any], key: str) -> str | None:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _battle_from_row(row: dict[str, Any]) -> Battle | str:
    ident = _text(row, "id")
    if ident is None:
        return "missing id"
    model_a, model_b = _text(row, "model_a"), _text(row, "model_b")
    if model_a is None or model_b is None:
        return "missing model name"
    if model_a == model_b:
        return "model_a equals model_b"
    if row.get("prompt") is None:
        return "missing prompt"
    turns = parse_turns(row["prompt"])
    if isinstance(turns, str):
        return turns
    winner = parse_winner(row)
    if winner not in _WINNER_NAMES.values():
        return winner
    return Battle(id=ident, turns=turns, model_a=model_a, model_b=model_b, winner=cast(Winner, winner))


def load_battles(path: Path, *, max_bad_fraction: float = 0.5) -> tuple[list[Battle], LoadReport]:
    """Battles from a ``.csv``, ``.jsonl`` or ``.parquet`` file in the Chatbot Arena 55k schema."""
    report = LoadReport(path=path)
    battles: list[Battle] = []
    for line, row in read_records(path, required=("id", "model_a", "model_b", "prompt")):
        report.rows += 1
        result = row if isinstance(row, str) else _battle_from_row(row)
        if isinstance(result, str):
            report.add_bad(result, line)
        else:
            battles.append(result)
            report.kept += 1
    report.check(max_bad_fraction)
    return battles, report


def load_questions(path: Path, max_bad_fraction: float = 0.5) -> tuple[dict[str, tuple[str, ...]], LoadReport]:
    """``question_id -> turns`` from a questions JSONL (``{"question_id", "turns"}``), and its report."""
    report = LoadReport(path=path)
    out: dict[str, tuple[str, ...]] = {}
    for line, row in read_jsonl(path):
        report.rows += 1
        if isinstance(row, str):
            reason = row
        elif row.get("question_id") is None:
            reason = "missing question_id"
        else:
            turns = parse_turns(row.get("turns"))
            if isinstance(turns, str):
                reason = turns
            elif str(row["question_id"]) in out:
                reason = "duplicate question_id"
            else:
                out[str(row["question_id"])] = turns
                report.kept += 1
                continue
        report.add_bad(reason, line)
    report.check(max_bad_fraction)
    return out, report


def _grade(row: dict[str, Any], questions: dict[str, tuple[str, ...]]) -> tuple[str, str, float] | str:
    if row.get("question_id") is None:
        return "missing question_id"
    qid = str(row["question_id"])
    if qid not in questions:
        return "unknown question_id"
    model = _text(row, "model")
    if model is None:
        return "missing model name"
    score = row.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float | str):
        return "missing or non-numeric score"
    try:
        value = float(score)
    except ValueError:
        return "missing or non-numeric score"
    # MT-Bench writes -1 when the judge's answer could not be parsed.
    if not math.isfinite(value) or value < 0:
        return "invalid score"
    return qid, model, value


def load_grades(
    questions: Path, scores: Path, *, max_bad_fraction: float = 0.5
) -> tuple[dict[str, tuple[str, ...]], dict[str, dict[str, float]], LoadReport]:
    """``(question_id -> turns, question_id -> model -> grade, report)`` from single-answer grades.

    ``questions``: JSONL ``{"question_id", "turns": [...]}``; ``scores``: JSONL
    ``{"question_id", "model", "score"}``. The report counts the scores file's rows; the
    questions file's report is in ``report.related``.
    """
    turns_of, questions_report = load_questions(questions, max_bad_fraction)
    report = LoadReport(path=scores, related=[questions_report])
    grades: dict[str, dict[str, float]] = defaultdict(dict)
    for line, row in read_jsonl(scores):
        report.rows += 1
        result = row if isinstance(row, str) else _grade(row, turns_of)
        if isinstance(result, str):
            report.add_bad(result, line)
            continue
        qid, model, value = result
        if model in grades[qid]:
            report.add_bad("duplicate grade for question and model", line)
            continue
        grades[qid][model] = value
        report.kept += 1
    report.check(max_bad_fraction)
    return turns_of, dict(grades), report


def battles_from_grades(
    questions: Path, scores: Path, *, max_bad_fraction: float = 0.5
) -> tuple[list[Battle], LoadReport]:
    """Pairwise battles from single-answer grades (:func:`load_grades`): higher grade wins, equal grades tie.

    For each question (sorted by id), every pair of graded models (in sorted name order) is one
    battle with id ``<question_id>-<n>`` (``n`` counts battles from 1 over the whole file), which
    is exactly how ``arena-bench-v1/battles.csv`` was made.
    """
    turns_of, grades, report = load_grades(questions, scores, max_bad_fraction=max_bad_fraction)
    battles: list[Battle] = []
    for qid in sorted(turns_of):
        per_model = grades.get(qid, {})
        for a, b in itertools.combinations(sorted(per_model), 2):
            sa, sb = per_model[a], per_model[b]
            winner: Winner = "model_a" if sa > sb else "model_b" if sb > sa else "tie"
            ident = f"{qid}-{len(battles) + 1}"
            battles.append(Battle(id=ident, turns=turns_of[qid], model_a=a, model_b=b, winner=winner))
    return battles, report
