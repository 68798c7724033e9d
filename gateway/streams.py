"""A streamed answer put together from its events, as the client received them.

The core keeps, per choice, the text and the tool calls (id and name from a call's first
piece, the arguments as the concatenation of every piece), so that a stream ends with the
same :class:`~gateway.types.Completion` a whole answer has (for accounting and learning). A
stream whose tool call never got a name, or whose arguments are not a JSON object once
complete, is a provider fault discovered at the end (the client has already seen the pieces:
the stream ends with an error event).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.formats.openai import parse_arguments
from gateway.providers import MalformedAnswerError
from gateway.types import Choice, Completion, StreamDelta, StreamEnd, TokenLogprob, ToolCall, ToolCallDelta, Usage


@dataclass
class _Call:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class _Choice:
    text: list[str] = field(default_factory=list)
    calls: dict[int, _Call] = field(default_factory=dict)
    logprobs: list[TokenLogprob] | None = None


class Assembler:
    """Collects stream events; :meth:`completion` builds the whole answer at the end."""

    def __init__(self) -> None:
        self._choices: dict[int, _Choice] = {}

    def add(self, event: StreamDelta | ToolCallDelta) -> None:
        choice = self._choices.setdefault(event.choice, _Choice())
        if isinstance(event, StreamDelta):
            choice.text.append(event.text)
            if event.logprobs is not None:
                choice.logprobs = (choice.logprobs or []) + list(event.logprobs)
            return
        call = choice.calls.setdefault(event.index, _Call())
        call.id = call.id or event.id
        call.name = call.name or event.name
        call.arguments.append(event.arguments)

    @property
    def text(self) -> str:
        """Choice 0's text so far."""
        return "".join(self._choices[0].text) if 0 in self._choices else ""

    def completion(self, end: StreamEnd, usage: Usage) -> Completion:
        reasons = (end.finish_reason, *end.more_finish_reasons)
        choices = []
        for i, reason in enumerate(reasons):
            got = self._choices.get(i, _Choice())
            calls = []
            for index in sorted(got.calls):
                call = got.calls[index]
                arguments = "".join(call.arguments) or "{}"
                if not call.id or not call.name or parse_arguments(arguments) is None:
                    raise MalformedAnswerError(
                        f"provider answer malformed: streamed tool call {index} has no id or name, or its arguments "
                        "are not a JSON object"
                    )
                calls.append(ToolCall(call.id, call.name, arguments))
            logprobs = None if got.logprobs is None else tuple(got.logprobs)
            stop_sequence = end.stop_sequence if i == 0 else ""
            choices.append(Choice("".join(got.text), reason, tuple(calls), logprobs, stop_sequence))
        return Completion.of(choices, usage)
