"""Synthetic user traffic with a known ground truth, for learning tests and the end-to-end benchmark.

Prompts come from a few *families* (a template filled with varied words), and
each family has fixed probabilities that a judge finds the strong model's answer
better, a tie, or the weak model's better: proofs and code mostly need the
strong model, greetings and names never do. A router trained on other data
knows nothing of these families, so learning from judged samples of this
traffic has something real to find, and how much is known.

:func:`judged_rows` writes such traffic as rows of the Chatbot Arena 55k schema
(what the gateway's store exports); :func:`family_of` and :func:`draw_verdict`
let a fake judge answer the same way for prompts seen on the wire.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Family:
    """A kind of prompt and how a judge compares the two tiers' answers on it."""

    name: str
    template: str
    fills: tuple[tuple[str, ...], ...]
    p_strong: float  # strong answer better
    p_weak: float  # weak answer better (the rest: tie)


FAMILIES: tuple[Family, ...] = (
    Family(
        "proof",
        "Prove that {0} for every {1}, and state where the argument would fail for {2}.",
        (
            (
                "the sum of the first n odd numbers is a square",
                "there are infinitely many primes",
                "sqrt(2) is irrational",
                "every bounded monotone sequence converges",
                "a tree with n nodes has n-1 edges",
            ),
            ("natural number n", "integer greater than one", "finite graph", "real sequence", "positive integer"),
            ("zero", "negative numbers", "infinite sets", "the empty case", "non-integers"),
        ),
        0.75,
        0.05,
    ),
    Family(
        "code",
        "Write a {0} function that {1}, handle {2}, and explain its complexity.",
        (
            ("Python", "Rust", "Go", "TypeScript", "C++"),
            (
                "merges k sorted lists",
                "parses an ISO-8601 duration",
                "finds the longest palindromic substring",
                "detects a cycle in a directed graph",
                "computes an LRU cache eviction order",
            ),
            ("empty input", "unicode text", "very large inputs", "concurrent callers", "malformed data"),
        ),
        0.6,
        0.08,
    ),
    Family(
        "summary",
        "Summarise this note about {0} in {1} for {2}.",
        (
            ("the quarterly budget", "a team offsite", "the new office rules", "a product launch", "the holiday rota"),
            ("three bullet points", "one paragraph", "two sentences", "a short email", "plain words"),
            ("my manager", "the whole team", "a new hire", "a customer", "my family"),
        ),
        0.2,
        0.15,
    ),
    Family(
        "greeting",
        "Say {0} to my {1} in {2}.",
        (
            ("hello", "happy birthday", "good luck", "thank you", "good night"),
            ("friend", "grandmother", "colleague", "neighbour", "teacher"),
            ("Spanish", "French", "German", "Italian", "Portuguese"),
        ),
        0.05,
        0.2,
    ),
    Family(
        "names",
        "Suggest {0} names for my new {1} that sound {2}.",
        (
            ("three", "five", "a few", "ten", "two"),
            ("puppy", "kitten", "boat", "bakery", "podcast"),
            ("cheerful", "classic", "funny", "short", "elegant"),
        ),
        0.05,
        0.25,
    ),
)


_TAILS = ("", "Thanks!", "Be concise.", "Take your time.", "This is urgent.", "Use simple words.")


def capacity() -> int:
    """How many distinct prompts :func:`prompts` can make."""
    return sum(len(list(itertools.product(*f.fills))) for f in FAMILIES) * len(_TAILS)


def prompts(n: int, seed: int = 0) -> list[tuple[str, Family]]:
    """``n`` distinct prompts (at most :func:`capacity`), families interleaved in a seeded order."""
    pools = [
        [
            (f"{f.template.format(*words)} {tail}".rstrip(), f)
            for words in itertools.product(*f.fills)
            for tail in _TAILS
        ]
        for f in FAMILIES
    ]
    if n > capacity():
        raise ValueError(f"at most {capacity()} distinct synthetic prompts, asked for {n}")
    rng = np.random.default_rng(seed)
    for pool in pools:
        rng.shuffle(pool)  # type: ignore[arg-type]
    out: list[tuple[str, Family]] = []
    for group in itertools.zip_longest(*pools):
        out.extend(item for item in group if item is not None)
    order = rng.permutation(len(out))[:n]
    return [out[i] for i in sorted(order.tolist())]


def family_of(prompt: str) -> Family | None:
    """The family whose template produced ``prompt`` (None for foreign prompts)."""
    for family in FAMILIES:
        head = family.template.split("{", 1)[0]
        if prompt.startswith(head):
            return family
    return None


def draw_verdict(family: Family, rng: np.random.Generator) -> int:
    """+1 strong better, 0 tie, -1 weak better, with the family's probabilities."""
    u = rng.random()
    return 1 if u < family.p_strong else (-1 if u < family.p_strong + family.p_weak else 0)


def stable_verdict(prompt: str, salt: str = "") -> int:
    """A verdict for ``prompt`` drawn from its family with a seed derived from the text (foreign prompts: tie)."""
    family = family_of(prompt)
    if family is None:
        return 0
    seed = int.from_bytes(hashlib.sha256(f"{salt}:{prompt}".encode()).digest()[:8], "big")
    return draw_verdict(family, np.random.default_rng(seed))


def judged_rows(n: int, strong: str, weak: str, *, seed: int = 0, other_pairs: int = 0) -> list[dict[str, str]]:
    """``n`` judged battles of ``strong`` vs ``weak`` (positions drawn per row) in the Arena 55k schema,
    plus ``other_pairs`` rows between two other models (which learning must ignore)."""
    rng = np.random.default_rng(seed + 1)
    rows = []
    for i, (text, family) in enumerate(prompts(n, seed)):
        verdict = draw_verdict(family, rng)
        strong_first = bool(rng.random() < 0.5)
        a_wins = verdict == (1 if strong_first else -1)
        b_wins = verdict == (-1 if strong_first else 1)
        rows.append(
            _row(
                f"syn-{seed}-{i}",
                strong if strong_first else weak,
                weak if strong_first else strong,
                text,
                a_wins,
                b_wins,
            )
        )
    for j in range(other_pairs):
        text, _ = prompts(1, seed + 1000 + j)[0]
        rows.append(_row(f"other-{seed}-{j}", "model-x", "model-y", text, j % 2 == 0, j % 2 == 1))
    return rows


def shuffled_verdicts(rows: list[dict[str, str]], seed: int = 0) -> list[dict[str, str]]:
    """``rows`` with their verdicts shuffled between them: the same prompts, coin-flip outcomes (nothing to learn)."""
    keys = ("winner_model_a", "winner_model_b", "winner_tie")
    verdicts = [tuple(r[k] for k in keys) for r in rows]
    random.Random(seed).shuffle(verdicts)
    return [r | dict(zip(keys, v, strict=True)) for r, v in zip(rows, verdicts, strict=True)]


def _row(ident: str, a: str, b: str, text: str, a_wins: bool, b_wins: bool) -> dict[str, str]:
    return {
        "id": ident,
        "model_a": a,
        "model_b": b,
        "prompt": json.dumps([text]),
        "response_a": "",
        "response_b": "",
        "winner_model_a": str(int(a_wins)),
        "winner_model_b": str(int(b_wins)),
        "winner_tie": str(int(not (a_wins or b_wins))),
    }
