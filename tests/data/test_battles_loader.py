"""Battle loaders: Arena 55k schema in CSV/JSONL, grades -> battles, bad-row accounting."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from lab.data import DataError
from lab.data.battles import Battle, battles_from_grades, load_battles, parse_turns

COLUMNS = [
    "id",
    "model_a",
    "model_b",
    "prompt",
    "response_a",
    "response_b",
    "winner_model_a",
    "winner_model_b",
    "winner_tie",
]


def _row(i: int, winner: str = "a", prompt: object = None, model_b: str = "m2") -> dict[str, object]:
    turns = prompt if prompt is not None else json.dumps([f"first {i}", f"question {i}?"])
    return {
        "id": f"b{i}",
        "model_a": "m1",
        "model_b": model_b,
        "prompt": turns,
        "response_a": "",
        "response_b": "",
        "winner_model_a": int(winner == "a"),
        "winner_model_b": int(winner == "b"),
        "winner_tie": int(winner == "tie"),
    }


def _write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _good_rows() -> list[dict[str, object]]:
    return [_row(0, "a"), _row(1, "b"), _row(2, "tie"), _row(3, "a", prompt=json.dumps(['multi\nline, "quoted"']))]


def test_csv_and_jsonl_give_the_same_battles(tmp_path: Path) -> None:
    from_csv, rep_csv = load_battles(_write_csv(tmp_path / "b.csv", _good_rows()))
    from_jsonl, rep_jsonl = load_battles(_write_jsonl(tmp_path / "b.jsonl", _good_rows()))
    assert from_csv == from_jsonl
    assert [b.winner for b in from_csv] == ["model_a", "model_b", "tie", "model_a"]
    assert from_csv[0] == Battle("b0", ("first 0", "question 0?"), "m1", "m2", "model_a")
    assert from_csv[0].prompt == "question 0?"
    assert from_csv[3].turns == ('multi\nline, "quoted"',)
    assert (rep_csv.rows, rep_csv.kept, rep_csv.bad) == (4, 4, {})
    assert rep_jsonl.kept == 4


def test_jsonl_accepts_native_lists_and_a_winner_column(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [
        {"id": 1, "model_a": "x", "model_b": "y", "prompt": ["hello"], "winner": "model_b"},
        {"id": 2, "model_a": "x", "model_b": "y", "prompt": "plain text", "winner": "tie (bothbad)"},
    ]
    battles, _ = load_battles(_write_jsonl(tmp_path / "w.jsonl", rows))
    assert [(b.id, b.turns, b.winner) for b in battles] == [("1", ("hello",), "model_b"), ("2", ("plain text",), "tie")]


def test_bad_rows_are_counted_with_their_first_line(tmp_path: Path) -> None:
    rows = _good_rows() * 3
    rows.insert(2, _row(9, "none"))  # no winner flag set -> line 4 (header is line 1)
    rows.insert(5, _row(10, prompt=json.dumps([None, "  "])))  # empty prompt -> line 7
    rows.insert(6, _row(11, model_b="m1"))  # same model twice -> line 8
    rows.append({**_row(12), "winner_tie": "maybe"})
    rows.append({**_row(13), "model_a": ""})
    battles, report = load_battles(_write_csv(tmp_path / "some-bad.csv", rows))
    assert len(battles) == 12 == report.kept
    assert report.rows == 17
    assert report.bad == {
        "unknown winner value": 2,
        "empty prompt": 1,
        "model_a equals model_b": 1,
        "missing model name": 1,
    }
    assert report.first_bad_line["unknown winner value"] == 4
    assert report.first_bad_line["empty prompt"] == 7
    assert report.first_bad_line["model_a equals model_b"] == 8
    assert "12/17 rows kept" in report.summary() and "empty prompt 1 (first at line 7)" in report.summary()


def test_mostly_bad_file_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    rows = [_row(0)] + [_row(i, "none") for i in range(1, 5)]
    path = _write_csv(tmp_path / "mostly-bad.csv", rows)
    with pytest.raises(DataError, match=r"mostly-bad\.csv:3: 4 of 5 rows are bad .*unknown winner value"):
        load_battles(path)
    battles, report = load_battles(path, max_bad_fraction=0.9)
    assert len(battles) == 1 and report.bad == {"unknown winner value": 4}


def test_bad_json_lines_and_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(_row(0)) + "\n{not json\n" + json.dumps(_row(1)) + "\n[1, 2]\n", encoding="utf-8")
    battles, report = load_battles(path)
    assert len(battles) == 2
    assert report.first_bad_line == {"invalid JSON": 2, "not a JSON object": 4}
    header_only = tmp_path / "wrong.csv"
    header_only.write_text("id,prompt,winner\n1,x,model_a\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"wrong\.csv:1: missing column\(s\) model_a, model_b"):
        load_battles(header_only)


def test_unsupported_inputs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_battles(tmp_path / "absent.csv")
    (tmp_path / "b.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match=r"unsupported file type '\.txt'"):
        load_battles(tmp_path / "b.txt")
    (tmp_path / "empty.csv").write_text(",".join(COLUMNS) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty\.csv: no data rows"):
        load_battles(tmp_path / "empty.csv")


def test_parquet_reads_with_pyarrow_or_is_a_clear_error_without(tmp_path: Path) -> None:
    path = tmp_path / "b.parquet"
    path.write_bytes(b"PAR1")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match="needs the optional pyarrow package"):
            load_battles(path)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(_good_rows()), path)
    battles, _ = load_battles(path)
    assert battles == load_battles(_write_csv(tmp_path / "b.csv", _good_rows()))[0]


def test_parse_turns() -> None:
    assert parse_turns('["a", "b"]') == ("a", "b")
    assert parse_turns("just text") == ("just text",)
    assert parse_turns(["a", None, "b"]) == ("a", "b")
    assert parse_turns("[broken") == "prompt is not a JSON list of strings"
    assert parse_turns('["a", 3]') == "prompt is not a JSON list of strings"
    assert parse_turns("[]") == "empty prompt"


def _grades(tmp_path: Path, scores: list[dict[str, object]]) -> tuple[Path, Path]:
    questions: list[dict[str, object]] = [
        {"question_id": "q2", "turns": ["second?"]},
        {"question_id": "q1", "turns": ["hi", "first?"]},
    ]
    return _write_jsonl(tmp_path / "questions.jsonl", questions), _write_jsonl(tmp_path / "scores.jsonl", scores)


def test_grades_become_pairwise_battles(tmp_path: Path) -> None:
    scores: list[dict[str, object]] = [
        {"question_id": "q1", "model": "c", "score": 7},
        {"question_id": "q1", "model": "a", "score": 9.0},
        {"question_id": "q1", "model": "b", "score": 7},
        {"question_id": "q2", "model": "a", "score": 2},
        {"question_id": "q2", "model": "b", "score": 5},
    ]
    battles, report = battles_from_grades(*_grades(tmp_path, scores))
    got = [(b.id, b.model_a, b.model_b, b.winner, b.prompt) for b in battles]
    assert got == [
        ("q1-1", "a", "b", "model_a", "first?"),
        ("q1-2", "a", "c", "model_a", "first?"),
        ("q1-3", "b", "c", "tie", "first?"),
        ("q2-4", "a", "b", "model_b", "second?"),
    ]
    assert battles[0].turns == ("hi", "first?")
    assert (report.rows, report.kept) == (5, 5)
    assert "questions.jsonl: 2/2 rows kept" in report.summary()


def test_bad_grades_are_counted_and_mostly_bad_is_an_error(tmp_path: Path) -> None:
    scores: list[dict[str, object]] = [
        {"question_id": "q1", "model": "a", "score": 9},
        {"question_id": "q1", "model": "b", "score": 3},
        {"question_id": "q1", "model": "a", "score": 1},
        {"question_id": "nope", "model": "a", "score": 1},
        {"question_id": "q2", "model": "a", "score": "ten"},
        {"question_id": "q2", "model": "b", "score": 5},
        {"question_id": "q2", "model": "c", "score": 6},
    ]
    battles, report = battles_from_grades(*_grades(tmp_path, scores))
    assert len(battles) == 2
    assert report.bad == {
        "duplicate grade for question and model": 1,
        "unknown question_id": 1,
        "missing or non-numeric score": 1,
    }
    assert report.first_bad_line["unknown question_id"] == 4
    bad = [{"question_id": "q1", "model": "a", "score": -1}] * 3 + [{"question_id": "q1", "model": "a", "score": 2}]
    with pytest.raises(DataError, match=r"scores\.jsonl:1: 3 of 4 rows are bad"):
        battles_from_grades(*_grades(tmp_path, bad))
