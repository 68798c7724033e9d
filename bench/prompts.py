"""The benchmarks' realistic prompt mix: full-length Arena prompts plus long-context prompts.

Real traffic is long: system prompts, retrieved context, pasted text. ``prompt_mix`` draws, with a
fixed seed:

- ``1 - long_share`` of the prompts: first user turns of real Chatbot Arena prompts, whole, as users
  sent them (``arena-bench-v1/questions.jsonl`` and ``arena-human-1k/prompts.jsonl``: 1,432 prompts;
  median ~60 tokens, ~15 % at 129-256 tokens, ~8 % past 256);
- ``long_share`` (default 25 %): long-context prompts: "context" made of real GSM8K model answers and
  MMLU questions joined by blank lines, up to a length drawn log-uniformly between
  ``long_chars`` (2,000 and 96,000 characters, about 500 to 24,000 tokens), followed by an Arena
  prompt as the question, as a retrieval-augmented request would look.

Everything comes from ``../shared/data`` (or ``$FERRYMAN_DATA``); nothing is downloaded.
``length_bucket`` names the token-length bucket a prompt falls in (tokens of the whole prompt,
before the scorer's truncation), as the benchmarks report them.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ferryman import paths

# (label, most tokens) in order; the last bucket is open-ended.
BUCKETS: tuple[tuple[str, float], ...] = (
    ("<=32", 32),
    ("33-128", 128),
    ("129-256", 256),
    ("257-2k", 2048),
    (">2k", math.inf),
)
LONG_CHARS = (2_000, 96_000)  # below the baseline scorer's 100,000-character prompt limit
QUESTIONS = paths.data_dir() / "arena-bench-v1" / "questions.jsonl"  # $FERRYMAN_DATA or ../shared/data


@dataclass(frozen=True)
class MixPrompt:
    """One prompt of the mix and where it came from ("arena" or "long-context")."""

    text: str
    kind: str


def length_bucket(tokens: int) -> str:
    """The bucket label of a prompt with ``tokens`` wordpiece tokens (without [CLS]/[SEP])."""
    for label, top in BUCKETS:
        if tokens <= top:
            return label
    raise AssertionError("unreachable: the last bucket is open")


def first_turns(path: Path) -> list[str]:
    """First turns of a JSONL file with a ``turns`` list per line (e.g. ``QUESTIONS``)."""
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line)["turns"][0] for line in fh if line.strip()]


def arena_prompts(data_dir: Path) -> list[str]:
    """First user turns of every Arena prompt in the public data (whole, not truncated)."""
    out = first_turns(data_dir / "arena-bench-v1" / "questions.jsonl")
    out += first_turns(data_dir / "arena-human-1k" / "prompts.jsonl")
    return [p for p in out if p.strip()]


def context_passages(data_dir: Path) -> list[str]:
    """Real passages to build long contexts from: GSM8K model answers and MMLU questions."""
    bench = data_dir / "routellm-benchmarks"
    passages: list[str] = []
    with (bench / "gsm8k" / "gsm8k_responses.csv").open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            passages += [v for k, v in row.items() if k.endswith("_response") and v and v.strip()]
    for path in sorted((bench / "mmlu" / "responses").glob("*.csv"))[:8]:
        with path.open(encoding="utf-8", newline="") as fh:
            passages += [row["prompt"] for row in csv.DictReader(fh) if row["prompt"].strip()]
    return passages


def long_context_prompt(rng: random.Random, passages: Sequence[str], question: str, chars: int) -> str:
    """About ``chars`` characters of passages, then the question."""
    parts: list[str] = []
    size = 0
    while size < chars - len(question):
        p = rng.choice(passages)
        parts.append(p)
        size += len(p) + 2
    context = "\n\n".join(parts)[: max(0, chars - len(question) - 2)]
    return f"{context}\n\n{question}"


def prompt_mix(
    data_dir: Path, n: int, *, long_share: float = 0.25, seed: int = 0, long_chars: tuple[int, int] = LONG_CHARS
) -> list[MixPrompt]:
    """``n`` prompts: Arena prompts and ``long_share`` long-context ones, shuffled (see the module docstring)."""
    if not 0.0 <= long_share <= 1.0:
        raise ValueError(f"long_share must be in [0, 1], got {long_share}")
    rng = random.Random(seed)
    arena = arena_prompts(data_dir)
    n_long = round(n * long_share)
    mix = [MixPrompt(p, "arena") for p in rng.sample(arena, min(n - n_long, len(arena)))]
    if n_long:
        passages = context_passages(data_dir)
        lo, hi = (math.log(c) for c in long_chars)
        for _ in range(n_long):
            chars = round(math.exp(rng.uniform(lo, hi)))
            mix.append(MixPrompt(long_context_prompt(rng, passages, rng.choice(arena), chars), "long-context"))
    rng.shuffle(mix)
    return mix


def describe_mix(mix: Sequence[MixPrompt], tokens: Sequence[int]) -> str:
    """One line: how many prompts of each kind and bucket."""
    kinds = {k: sum(p.kind == k for p in mix) for k in ("arena", "long-context")}
    counts = {label: 0 for label, _ in BUCKETS}
    for t in tokens:
        counts[length_bucket(t)] += 1
    buckets = ", ".join(f"{label}: {c}" for label, c in counts.items())
    return (
        f"{len(mix)} prompts: {kinds['arena']} Arena (first turns, whole), {kinds['long-context']} long-context "
        f"(GSM8K answers + MMLU questions as context, {LONG_CHARS[0]:,}-{LONG_CHARS[1]:,} chars, then an Arena "
        f"prompt); tokens {buckets}"
    )
