"""Cost accounting: prices per 1M tokens, and a rough token estimate when a provider sends none."""

from __future__ import annotations

import json

from gateway.config import ModelConfig
from gateway.types import ChatRequest, Completion, Message, Usage


def price_usd(model: ModelConfig, input_tokens: float, output_tokens: float) -> float:
    """The price in US dollars of a call with these token counts (means allowed: ``gateway.cost_target``)."""
    return (input_tokens * model.price_in_per_mtok + output_tokens * model.price_out_per_mtok) / 1e6


def cost_usd(model: ModelConfig, usage: Usage) -> float:
    """Estimated price of one call in US dollars."""
    return price_usd(model, usage.prompt_tokens, usage.completion_tokens)


def estimate_tokens(text: str) -> int:
    """About four characters per token, the usual rule of thumb for English BPE vocabularies."""
    return max(1, (len(text) + 3) // 4) if text else 0


def estimate_prompt_tokens(request: ChatRequest) -> int:
    """A request's input tokens, estimated: every turn's text and tool calls, the tools and the output schema."""
    texts = [m.content for m in request.messages]
    texts += [c.name + c.arguments for m in request.messages for c in m.tool_calls]
    texts += [t.name + t.description + json.dumps(t.parameters or {}) for t in request.tools]
    fmt = request.response_format
    if fmt is not None and fmt.schema is not None:
        texts.append(json.dumps(fmt.schema))
    return sum(estimate_tokens(t) for t in texts)


def estimate_usage(messages: tuple[Message, ...], completion: str) -> Usage:
    """Usage for a stream whose provider reported none."""
    return Usage(sum(estimate_tokens(m.content) for m in messages), estimate_tokens(completion))


def usage_or_estimate(messages: tuple[Message, ...], completion: Completion) -> Usage:
    """The provider's usage of a whole answer, or an estimate when it reported none."""
    return completion.usage if completion.usage.total_tokens else estimate_usage(messages, completion.content)
