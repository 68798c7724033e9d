"""A fake rating model for the causal-LLM router: a real fake provider (``harness.fake_provider``) that
reads the rating request it is sent and answers like a model asked to rate how hard a prompt is.

Rules (``FakeRater.rule``), each ``(prompt) -> reply text``:
- :func:`by_keywords` (default): a rating from words in the prompt (proofs and derivations 5, code 4,
  summaries and essays 3, greetings 1, anything else 2), as ``{"rating": N, "reason": "..."}``;
- :func:`nonsense`: prose with no rating in it; :func:`out_of_range`: ``{"rating": 9}``.
Slow answers (the router's deadline) come from the base class's faults (``slow``).
``FakeRater.prompts`` keeps every prompt it was asked to rate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from harness.fake_provider import FakeProvider

Rule = Callable[[str], str]
_QUOTED = re.compile(r"<<<\n(?P<p>.*)\n>>>", re.S)

KEYWORD_RATINGS: tuple[tuple[tuple[str, ...], int, str], ...] = (
    (("prove", "theorem", "derive", "lemma"), 5, "a proof needs careful multi-step reasoning"),
    (("function", "code", "sql", "debug", "algorithm"), 4, "writing correct code takes a capable model"),
    (("summarise", "summarize", "essay", "poem"), 3, "writing quality matters here"),
    (("hello", "hi ", "thanks", "how are you"), 1, "small talk; any model will do"),
)


def by_keywords(prompt: str) -> str:
    text = prompt.lower()
    for words, rating, reason in KEYWORD_RATINGS:
        if any(w in text for w in words):
            return json.dumps({"rating": rating, "reason": reason})
    return json.dumps({"rating": 2, "reason": "a plain request a small model likely handles"})


def nonsense(prompt: str) -> str:
    return "What a lovely question! I would be happy to answer it in detail."


def out_of_range(prompt: str) -> str:
    return json.dumps({"rating": 9, "reason": "very hard"})


class FakeRater(FakeProvider):
    """A fake provider whose answers are difficulty ratings (OpenAI and Anthropic APIs, like its base)."""

    def __init__(self, rule: Rule | None = None, name: str = "rater") -> None:
        super().__init__(name=name)
        self.rule: Rule = rule or by_keywords
        self.prompts: list[str] = []

    def reply_for(self, body: dict[str, Any]) -> str:
        messages = body.get("messages") or []
        text = str(messages[-1].get("content", "")) if messages else ""
        match = _QUOTED.search(text)
        prompt = match["p"] if match else text
        self.prompts.append(prompt)
        return self.rule(prompt)
