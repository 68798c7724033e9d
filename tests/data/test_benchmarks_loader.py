"""Benchmark loaders: RouteLLM layout on small temp files, and the real shared suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.data import DataError
from lab.data.benchmarks import STRONG, WEAK, default_data_dir, load_benchmark
from lab.data.keys import prompt_key


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _suite(root: Path) -> Path:
    mmlu = root / "routellm-benchmarks" / "mmlu"
    (mmlu / "responses").mkdir(parents=True)
    (mmlu / "responses" / "mmlu_anatomy.csv").write_text(
        f"prompt,{WEAK},{STRONG}\n"
        '"Q1\nA. x\nAnswer:",True,True\n'
        "Q2,False,True\n"
        "Q dup,True,False\n"
        "Q leaked,False,True\n",
        encoding="utf-8",
    )
    (mmlu / "responses" / "mmlu_virology.csv").write_text(
        f"prompt,{WEAK},{STRONG}\nQ dup,False,False\nQ3,true,FALSE\n", encoding="utf-8"
    )
    _write_jsonl(mmlu / "contaminated_prompts.jsonl", [{"train_prompt": "x", "eval_prompt": "Q leaked"}])
    gsm = root / "routellm-benchmarks" / "gsm8k"
    gsm.mkdir()
    (gsm / "gsm8k_responses.csv").write_text(
        f"prompt,{WEAK},{STRONG},{WEAK}_response,{STRONG}_response\nAdd 2+2,False,True,5,4\n", encoding="utf-8"
    )
    _write_jsonl(gsm / "contaminated_prompts.jsonl", [])
    mt = root / "routellm-benchmarks" / "mt_bench"
    _write_jsonl(
        mt / "question.jsonl",
        [
            {"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Now shorter."]},
            {"question_id": 82, "category": "math", "turns": ["What is 3*7?", "And 3*8?"]},
        ],
    )
    grades = [(81, STRONG, 1, 9), (81, STRONG, 2, 8), (81, WEAK, 1, 6), (81, WEAK, 2, 7)]
    grades += [(82, STRONG, 1, 10), (82, STRONG, 2, 10), (82, WEAK, 1, 3), (82, WEAK, 2, 5), (82, "other", 1, 1)]
    _write_jsonl(
        mt / "judgements.jsonl", [{"question_id": q, "model": m, "turn": t, "score": s} for q, m, t, s in grades]
    )
    _write_jsonl(mt / "contaminated_prompts.jsonl", [{"eval_prompt": "And 3*8?"}])
    return root


def test_mmlu_subjects_labels_keys_and_contamination(tmp_path: Path) -> None:
    root = _suite(tmp_path)
    items = load_benchmark("mmlu", root)
    assert [(i.group, i.prompt, i.strong, i.weak) for i in items] == [
        ("anatomy", "Q1\nA. x\nAnswer:", 1.0, 1.0),
        ("anatomy", "Q2", 1.0, 0.0),
        ("anatomy", "Q dup", 0.0, 1.0),
        ("virology", "Q dup", 0.0, 0.0),
        ("virology", "Q3", 0.0, 1.0),
    ]
    assert items[0].key == prompt_key("Q1 A. x Answer:")
    assert items[3].key == prompt_key("Q dup") + "~1"  # repeats get unique keys
    assert len({i.key for i in items}) == len(items)
    kept_all = load_benchmark("mmlu", root / "routellm-benchmarks", drop_contaminated=False)
    assert [i.prompt for i in kept_all][3] == "Q leaked"


def test_gsm8k_and_mt_bench(tmp_path: Path) -> None:
    root = _suite(tmp_path)
    (gsm,) = load_benchmark("gsm8k", root)
    assert (gsm.group, gsm.strong, gsm.weak, gsm.gain) == ("gsm8k", 1.0, 0.0, 1.0)
    mt = load_benchmark("mt-bench", root, drop_contaminated=False)
    assert [(i.prompt, i.group, i.strong, i.weak) for i in mt] == [
        ("Write a poem.", "writing", 8.5, 6.5),
        ("What is 3*7?", "math", 10.0, 4.0),
    ]
    # A question is contaminated when either of its turns is listed.
    assert [i.prompt for i in load_benchmark("mt-bench", root)] == ["Write a poem."]


def test_bad_rows_and_clear_errors(tmp_path: Path) -> None:
    root = _suite(tmp_path)
    path = root / "routellm-benchmarks" / "mmlu" / "responses" / "mmlu_virology.csv"
    path.write_text(f"prompt,{WEAK},{STRONG}\nQ3,True,True\n,True,True\nQ4,yes,True\nQ5,True\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"mmlu_virology\.csv:3: 3 of 4 rows are bad"):
        load_benchmark("mmlu", root)
    reports: list = []
    items = load_benchmark("mmlu", root, max_bad_fraction=0.8, reports=reports)
    assert [i.prompt for i in items if i.group == "virology"] == ["Q3"]
    assert reports[1].bad == {"empty prompt": 1, "correctness is not True/False": 1, "wrong number of CSV fields": 1}
    with pytest.raises(ValueError, match="unknown benchmark 'hellaswag'"):
        load_benchmark("hellaswag", root)
    with pytest.raises(DataError, match="benchmark folder not found"):
        load_benchmark("mmlu", tmp_path / "nowhere")
    (root / "routellm-benchmarks" / "gsm8k" / "contaminated_prompts.jsonl").unlink()
    with pytest.raises(DataError, match="contamination list not found"):
        load_benchmark("gsm8k", root)


def test_default_data_dir_honours_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRYMAN_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.setenv("FERRYMAN_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="set FERRYMAN_DATA"):
        default_data_dir()


def test_real_suite_matches_the_published_counts() -> None:
    data = default_data_dir()
    mmlu = load_benchmark("mmlu", data, drop_contaminated=False)
    assert len(mmlu) == 14042 and len({i.group for i in mmlu}) == 57
    assert round(100 * sum(i.strong for i in mmlu) / len(mmlu), 1) == 80.6
    assert round(100 * sum(i.weak for i in mmlu) / len(mmlu), 1) == 68.1
    assert len(load_benchmark("mmlu", data)) == 14042 - 5
    gsm = load_benchmark("gsm8k", data, drop_contaminated=False)
    assert len(gsm) == 1319 and round(100 * sum(i.strong for i in gsm) / len(gsm), 1) == 85.7
    assert len(load_benchmark("gsm8k", data)) == 1319 - 12
    assert len(load_benchmark("mt-bench", data)) == 72
