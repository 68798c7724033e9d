"""Counting what happened to requests under faults: sent / answered / after fallback / clean error / lost.

Shared by the fault suite (``tests/gateway``) and ``ferryman bench faults``. A request is

- *answered*: a complete answer (a whole completion, or a stream ending with ``[DONE]``);
  *after fallback* when the gateway served it from another model than the first it tried
  (``x-ferryman-fallbacks`` > 0), counted within answered;
- a *clean error*: a typed refusal the client can act on — an HTTP 4xx, 502, 503 or 504 with an
  OpenAI error body, a stream whose last event is an error event, or a gRPC status other than
  INTERNAL, UNKNOWN and CANCELLED;
- *lost*: anything else — a connection reset, an HTTP 500 or a body that is not an OpenAI error,
  a stream cut without ``[DONE]`` or an error event, gRPC INTERNAL/UNKNOWN/CANCELLED.

:class:`FaultTable` collects rows and renders the Markdown table ``docs/gateway.md`` shows
(``make fault-table`` regenerates it between the ``fault-table`` markers).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

ANSWERED, FALLBACK, CLEAN, LOST = "answered", "after_fallback", "clean_error", "lost"
CLEAN_HTTP_5XX = frozenset({502, 503, 504})
LOST_GRPC = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED})
BEGIN, END = "<!-- fault-table:begin -->", "<!-- fault-table:end -->"


@dataclass
class Tally:
    """Counts of one scenario (answered includes after_fallback)."""

    sent: int = 0
    answered: int = 0
    after_fallback: int = 0
    clean_error: int = 0
    lost: int = 0
    #: What the lost ones looked like (for the assertion message).
    lost_examples: list[str] = field(default_factory=list)

    def add(self, outcome: str, detail: str = "") -> str:
        self.sent += 1
        if outcome in (ANSWERED, FALLBACK):
            self.answered += 1
            self.after_fallback += outcome == FALLBACK
        elif outcome == CLEAN:
            self.clean_error += 1
        else:
            self.lost += 1
            if len(self.lost_examples) < 5:
                self.lost_examples.append(detail[:300])
        return outcome

    def __iadd__(self, other: Tally) -> Tally:
        self.sent += other.sent
        self.answered += other.answered
        self.after_fallback += other.after_fallback
        self.clean_error += other.clean_error
        self.lost += other.lost
        self.lost_examples += other.lost_examples
        return self

    def counts(self) -> tuple[int, int, int, int, int]:
        return self.sent, self.answered, self.after_fallback, self.clean_error, self.lost


def _is_openai_error(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("error"), dict) and "message" in body["error"]


def classify_http(status: int, headers: Any, body: bytes, *, stream: bool = False) -> tuple[str, str]:
    """(outcome, detail) for one raw HTTP answer; ``stream``: a ``text/event-stream`` body."""
    text = body.decode("utf-8", "replace")
    if status == 200 and stream:
        events = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
        if events and events[-1] == "[DONE]":
            return (FALLBACK if int(headers.get("x-ferryman-fallbacks", "0")) else ANSWERED), ""
        try:
            last = json.loads(events[-1]) if events else None
        except ValueError:
            last = None
        if _is_openai_error(last):
            return CLEAN, str(last)
        return LOST, f"stream ended without [DONE] or an error event: {text[-200:]!r}"
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if status == 200:
        if isinstance(data, dict) and isinstance(data.get("choices"), list) and data["choices"]:
            return (FALLBACK if int(headers.get("x-ferryman-fallbacks", "0")) else ANSWERED), ""
        return LOST, f"HTTP 200 without an answer: {text[:200]!r}"
    if (400 <= status < 500 or status in CLEAN_HTTP_5XX) and _is_openai_error(data):
        return CLEAN, f"HTTP {status}"
    return LOST, f"HTTP {status}: {text[:200]!r}"


def classify_grpc(code: grpc.StatusCode, fallbacks: int = 0) -> str:
    if code == grpc.StatusCode.OK:
        return FALLBACK if fallbacks else ANSWERED
    return LOST if code in LOST_GRPC else CLEAN


@dataclass
class FaultRow:
    group: str
    fault: str
    transport: str
    tally: Tally
    expected: str


class FaultTable:
    """Rows of the fault suite, rendered as the Markdown table of docs/gateway.md."""

    def __init__(self) -> None:
        self.rows: list[FaultRow] = []

    def add(self, group: str, fault: str, transport: str, tally: Tally, expected: str) -> None:
        self.rows.append(FaultRow(group, fault, transport, tally, expected))

    def markdown(self) -> str:
        head = "| | fault | via | sent | answered | after fallback | clean error | lost | what the client gets |"
        lines = [head, "|---|---|---|--:|--:|--:|--:|--:|---|"]
        order = {g: i for i, g in enumerate(dict.fromkeys(r.group for r in self.rows))}
        for row in sorted(self.rows, key=lambda r: order[r.group]):
            t = row.tally
            counts = f"{t.sent} | {t.answered} | {t.after_fallback} | {t.clean_error} | {t.lost}"
            lines.append(f"| {row.group} | {row.fault} | {row.transport} | {counts} | {row.expected} |")
        total = Tally()
        for row in self.rows:
            total += row.tally
        s, a, f, c, lost = total.counts()
        lines.append(
            f"| | **all {len(self.rows)} scenarios** | | **{s}** | **{a}** | **{f}** | **{c}** | **{lost}** | |"
        )
        return "\n".join(lines)

    def write_into(self, path: Path) -> None:
        """Replace the text between the fault-table markers of ``path`` with the table."""
        text = path.read_text(encoding="utf-8")
        pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
        if not pattern.search(text):
            raise ValueError(f"{path} has no {BEGIN} ... {END} block")
        path.write_text(pattern.sub(lambda _: f"{BEGIN}\n{self.markdown()}\n{END}", text), encoding="utf-8")
