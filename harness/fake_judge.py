"""A fake judge: a real fake provider (``harness.fake_provider``) that reads the pairwise judge prompt
it is sent and answers like an LLM judge, by a rule a test chooses.

Rules (``FakeJudge.rule``), each ``(question, answer_a, answer_b) -> reply text``:
- :func:`prefer_marker` (default, marker ``"strong"``): the answer containing the marker wins, a tie
  when both or neither do; consistent in both orders, so the combined verdict is that answer;
- :func:`always_a`: ``[[A]]`` whatever is shown (pure position bias: the two orders disagree);
- :func:`nonsense`: no verdict token at all; :func:`two_verdicts`: both ``[[A]]`` and ``[[B]]``;
- :func:`by_question`: the verdict comes from a table keyed by the question (the strong or the weak
  answer wins, or a tie), for tests of the quality figures;
- :func:`by_traffic_family`: the verdict is drawn from the question's family in ``harness.traffic``
  (seeded by the text, so a question always gets the same one), for the learning loop end to end.
``FakeJudge.prompts`` keeps every judge prompt received, so tests can check what was asked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from harness.fake_provider import FakeProvider

Rule = Callable[[str, str, str], str]
_SECTION = re.compile(
    r"\[User Question\]\n(?P<q>.*?)\n\n\[The Start of Assistant A's Answer\]\n(?P<a>.*?)\n"
    r"\[The End of Assistant A's Answer\]\n\n\[The Start of Assistant B's Answer\]\n(?P<b>.*?)\n"
    r"\[The End of Assistant B's Answer\]",
    re.S,
)


def _verdict(letter: str) -> str:
    return f"Both answers address the question; weighing accuracy and helpfulness.\n\nFinal verdict: [[{letter}]]"


def prefer_marker(marker: str = "strong") -> Rule:
    def rule(question: str, a: str, b: str) -> str:
        in_a, in_b = marker in a, marker in b
        return _verdict("A" if in_a and not in_b else "B" if in_b and not in_a else "C")

    return rule


def always_a(question: str, a: str, b: str) -> str:
    return _verdict("A")


def nonsense(question: str, a: str, b: str) -> str:
    return "I like both of these answers very much. Verdict: assistant A, or maybe B."


def two_verdicts(question: str, a: str, b: str) -> str:
    return "At first [[A]] seemed better, but on reflection [[B]]."


def by_question(outcomes: Mapping[str, str], strong_marker: str = "strong") -> Rule:
    """``outcomes[question]`` is ``strong``, ``weak`` or ``tie``; answers are told apart by the marker."""

    def rule(question: str, a: str, b: str) -> str:
        want = outcomes.get(question, "tie")
        if want == "tie":
            return _verdict("C")
        a_is_strong = strong_marker in a
        return _verdict("A" if (want == "strong") == a_is_strong else "B")

    return rule


def by_traffic_family(strong_marker: str = "strong") -> Rule:
    """Verdicts of synthetic traffic (``harness.traffic.stable_verdict``); answers told apart by the marker."""
    from harness.traffic import stable_verdict

    def rule(question: str, a: str, b: str) -> str:
        verdict = stable_verdict(question)
        if verdict == 0:
            return _verdict("C")
        a_is_strong = strong_marker in a
        return _verdict("A" if (verdict > 0) == a_is_strong else "B")

    return rule


class FakeJudge(FakeProvider):
    """A fake provider whose answers are judge verdicts (OpenAI and Anthropic APIs, like its base)."""

    def __init__(self, rule: Rule | None = None, name: str = "judge") -> None:
        super().__init__(name=name)
        self.rule: Rule = rule or prefer_marker()
        self.prompts: list[str] = []

    def reply_for(self, body: dict[str, Any]) -> str:
        messages = body.get("messages") or []
        prompt = str(messages[-1].get("content", "")) if messages else ""
        self.prompts.append(prompt)
        match = _SECTION.search(prompt)
        if match is None:
            return "I was not given two answers to compare."
        return self.rule(match["q"], match["a"], match["b"])
