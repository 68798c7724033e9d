"""The pairwise judge: which of two answers to the same conversation is better.

The prompt is MT-Bench's pairwise judge prompt ("pair-v2", FastChat ``judge_prompts.jsonl``,
Apache-2.0), which Arena-Hard's judge follows too: an impartial-judge system prompt, the
question, both answers between start/end markers, and a final verdict in a fixed format:
``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie). Earlier turns of the conversation are shown as context.

Position bias is cancelled by asking twice, the strong model's answer first and then the weak
one's first (both calls at once). Parsing is strict: an answer must contain exactly one verdict
token (repeated copies of the same one are fine); none, or two different ones, is *invalid*.
Combined: both orders agree → that verdict; they disagree (one says A, the other B once the
order is undone, or one says tie) → a *tie* (MT-Bench's rule for inconsistent pairs; configurable
to *discard*); either answer invalid → invalid, either call failed → error (neither is a label;
both are counted).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from gateway.config import ModelConfig
from gateway.cost import cost_usd, estimate_tokens, usage_or_estimate
from gateway.learning.config import JudgeConfig
from gateway.learning.records import Verdict
from gateway.providers import Provider, ProviderError
from gateway.types import ChatRequest, Message

SYSTEM_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants "
    "to the user question displayed below. You should choose the assistant that follows the user's instructions "
    "and answers the user's question better. Your evaluation should consider factors such as the helpfulness, "
    "relevance, accuracy, depth, creativity, and level of detail of their responses. Begin your evaluation by "
    "comparing the two responses and provide a short explanation. Avoid any position biases and ensure that the "
    "order in which the responses were presented does not influence your decision. Do not allow the length of the "
    "responses to influence your evaluation. Do not favor certain names of the assistants. Be as objective as "
    'possible. After providing your explanation, output your final verdict by strictly following this format: "[[A]]" '
    'if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.'
)

_VERDICT = re.compile(r"\[\[([ABC])\]\]")
#: The system prompt and the markers around the answers, in tokens (about).
JUDGE_TEMPLATE_TOKENS = estimate_tokens(SYSTEM_PROMPT) + 60
#: Per-order outcomes (besides the three labels).
INVALID, ERROR = "invalid", "error"


def build_prompt(messages: tuple[Message, ...], answer_a: str, answer_b: str) -> str:
    """The judge's user message: context, the last user question, answer A, answer B."""
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    parts: list[str] = []
    system = [m.content for m in messages[:last_user] if m.role == "system"]
    if system:
        parts.append("[System Instructions Given to the Assistants]\n" + "\n".join(system))
    history = [m for m in messages[:last_user] if m.role != "system"]
    if history:
        lines = [f"{'User' if m.role == 'user' else 'Assistant'}: {m.content}" for m in history]
        parts.append("[Conversation History]\n" + "\n".join(lines))
    question = messages[last_user].content if last_user >= 0 else ""
    parts.append(f"[User Question]\n{question}")
    parts.append(f"[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]")
    parts.append(f"[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]")
    return "\n\n".join(parts)


def parse_verdict(text: str) -> str:
    """ "A", "B" or "C" when the text holds exactly one distinct verdict token, else ``invalid``."""
    found = set(_VERDICT.findall(text))
    return found.pop() if len(found) == 1 else INVALID


def combine(strong_first: str, weak_first: str, on_inconsistent: str) -> Verdict:
    """One verdict from the two orders' (already un-swapped) verdicts."""
    if ERROR in (strong_first, weak_first):
        return Verdict.ERROR
    if INVALID in (strong_first, weak_first):
        return Verdict.INVALID
    if strong_first == weak_first:
        return Verdict(strong_first)
    return Verdict.TIE if on_inconsistent == "tie" else Verdict.INCONSISTENT


@dataclass(frozen=True)
class Judgement:
    """Both orders' verdicts (strong, weak, tie, invalid, error), the combined one, and the judge's cost."""

    strong_first: str
    weak_first: str
    verdict: Verdict
    cost_usd: float

    @property
    def consistent(self) -> bool:
        return self.strong_first == self.weak_first


class Judge:
    """Asks the configured judge model, both orders, and combines the verdicts."""

    def __init__(self, provider: Provider, model: ModelConfig, config: JudgeConfig, timeout_s: float) -> None:
        self._provider = provider
        self._model = model
        self._config = config
        self._timeout_s = timeout_s

    @property
    def model(self) -> str:
        return self._model.name

    async def _ask(self, messages: tuple[Message, ...], a: str, b: str, a_is_strong: bool) -> tuple[str, float]:
        prompt = build_prompt(messages, a, b)
        request = ChatRequest(
            model=self._model.name,
            messages=(Message("system", SYSTEM_PROMPT), Message("user", prompt)),
            temperature=0.0,
            max_tokens=self._config.max_tokens,
        )
        try:
            async with asyncio.timeout(self._timeout_s):
                answer = await self._provider.complete(request)
        except (ProviderError, TimeoutError):
            return ERROR, 0.0
        usage = usage_or_estimate(request.messages, answer)
        letter = parse_verdict(answer.content)
        strong, weak = ("A", "B") if a_is_strong else ("B", "A")
        verdict = {strong: "strong", weak: "weak", "C": "tie"}.get(letter, INVALID)
        return verdict, cost_usd(self._model, usage)

    async def compare(self, messages: tuple[Message, ...], strong: str, weak: str) -> Judgement:
        """Judge the strong and the weak answer to ``messages`` (never raises for a judge failure)."""
        (first, c1), (second, c2) = await asyncio.gather(
            self._ask(messages, strong, weak, a_is_strong=True),
            self._ask(messages, weak, strong, a_is_strong=False),
        )
        return Judgement(first, second, combine(first, second, self._config.on_inconsistent), c1 + c2)
