"""A small slice of the public data in the same layout, for fast training tests."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

csv.field_size_limit(sys.maxsize)


def _head_csv(src: Path, dst: Path, rows: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open(newline="", encoding="utf-8") as fin, dst.open("w", newline="", encoding="utf-8") as fout:
        reader = csv.reader(fin)
        writer = csv.writer(fout)
        writer.writerow(next(reader))
        for i, row in enumerate(reader):
            if i >= rows:
                break
            writer.writerow(row)


def write_slice(
    src: Path, dst: Path, *, mmlu_files: int = 3, mmlu_rows: int = 40, gsm8k_rows: int = 80, battles_rows: int = 600
) -> Path:
    """Copy the first rows of a few MMLU subjects, GSM8K and the arena battles into ``dst``."""
    bench, out = src / "routellm-benchmarks", dst / "routellm-benchmarks"
    for name in sorted((bench / "mmlu" / "responses").glob("mmlu_*.csv"))[:mmlu_files]:
        _head_csv(name, out / "mmlu" / "responses" / name.name, mmlu_rows)
    _head_csv(bench / "gsm8k" / "gsm8k_responses.csv", out / "gsm8k" / "gsm8k_responses.csv", gsm8k_rows)
    for sub in ("mmlu", "gsm8k", "mt_bench"):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for f in (bench / sub).glob("*.jsonl"):
            shutil.copyfile(f, out / sub / f.name)
    _head_csv(src / "arena-bench-v1" / "battles.csv", dst / "arena-bench-v1" / "battles.csv", battles_rows)
    shutil.copyfile(src / "arena-bench-v1" / "questions.jsonl", dst / "arena-bench-v1" / "questions.jsonl")
    return dst
