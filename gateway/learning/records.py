"""What the learning store keeps: one :class:`Record` per recorded answer, keyed by its response id.

A record is written when an answer of a learning policy is recorded for feedback, and (again, as
an upsert) when its shadow comparison has been judged. Ratings are written separately
(``Store.set_rating``) so that a late shadow write never overwrites one. Flat fields only, so
that the SQLite columns and the Redis hash fields are the same names (:data:`FIELDS`).
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass, fields
from typing import Any

from gateway.types import Accounting, ChatRequest, Completion, Decision


class Verdict(enum.StrEnum):
    """The judge's combined verdict on one comparison (the first three are labels; the rest are not)."""

    STRONG = "strong"
    WEAK = "weak"
    TIE = "tie"
    #: The two orders disagreed and ``judge.on_inconsistent`` is ``discard``.
    INCONSISTENT = "inconsistent"
    #: An answer of the judge had no single, well-formed verdict.
    INVALID = "invalid"
    #: A judge call failed or timed out.
    ERROR = "error"

    @property
    def is_label(self) -> bool:
        return self in (Verdict.STRONG, Verdict.WEAK, Verdict.TIE)


#: The verdicts that label a comparison (:attr:`Verdict.is_label`).
LABEL_VERDICTS = tuple(v.value for v in Verdict if v.is_label)


def is_labelled(verdict: str | bytes | None, rating: str | bytes | None) -> bool:
    """Whether a stored record carries a label (a judge's verdict that is one, or a rating): what the size
    cap keeps longest. Bytes as Redis returns them are accepted."""
    v = verdict.decode() if isinstance(verdict, bytes) else verdict
    return v in LABEL_VERDICTS or bool(rating)


class Rating(enum.StrEnum):
    """An application's explicit rating of the answer it got."""

    GOOD = "good"
    BAD = "bad"


@dataclass(frozen=True)
class Answered:
    """A request the gateway has fully answered, with what learning needs to know about it."""

    request: ChatRequest
    response_id: str
    decision: Decision
    accounting: Accounting
    completion: Completion
    created: float


@dataclass
class Record:
    """One answer a learning policy served, and what was learned about it."""

    id: str
    created_at: float
    tenant: str
    policy: str
    #: The conversation as sent (``[{"role", "content"}, ...]``), redacted, as JSON.
    messages_json: str
    # the routing decision
    router: str = ""
    router_version: str = ""
    score: float | None = None
    threshold: float = 0.0
    decision_source: str = ""
    routed_tier: str = ""
    # the answer the client got
    served_model: str = ""
    served_tier: str = ""
    served_router_model: str = ""
    served_answer: str = ""
    served_cost_usd: float = 0.0
    # the other tier's model (the one asked, or when not shadowed the one that would have been) and its answer
    shadow_model: str = ""
    shadow_tier: str = ""
    shadow_router_model: str = ""
    shadow_answer: str = ""
    shadow_cost_usd: float = 0.0
    #: ok, error, timeout, breaker_open ("" = not shadowed).
    shadow_status: str = ""
    # the judge
    judge_model: str = ""
    #: Per-order verdicts, strong answer shown first / weak answer shown first: strong, weak, tie, invalid, error.
    judge_strong_first: str = ""
    judge_weak_first: str = ""
    verdict: str = ""
    judge_cost_usd: float = 0.0
    # explicit feedback (written by Store.set_rating only)
    rating: str = ""
    rated_at: float | None = None

    def answers(self) -> tuple[str, str]:
        """(strong answer, weak answer); either may be empty."""
        if self.served_tier == "strong":
            return self.served_answer, self.shadow_answer
        return self.shadow_answer, self.served_answer

    def costs(self) -> tuple[float, float]:
        """(strong answer's cost, weak answer's cost) in US dollars."""
        if self.served_tier == "strong":
            return self.served_cost_usd, self.shadow_cost_usd
        return self.shadow_cost_usd, self.served_cost_usd

    def user_turns(self) -> list[str]:
        """The user turns of the conversation (the Arena schema's ``prompt``)."""
        try:
            messages = json.loads(self.messages_json)
        except ValueError:
            return []
        return [str(m.get("content", "")) for m in messages if isinstance(m, dict) and m.get("role") == "user"]

    def to_fields(self, *, with_rating: bool = False) -> dict[str, str]:
        """Flat string fields for a Redis hash (rating fields only when asked: see the module docstring)."""
        out: dict[str, str] = {}
        for name in FIELDS:
            if name in RATING_FIELDS and not with_rating:
                continue
            value = getattr(self, name)
            out[name] = "" if value is None else repr(value) if isinstance(value, float) else str(value)
        return out

    def to_row(self, *, with_rating: bool = False) -> dict[str, Any]:
        """Column values for SQLite (same names as :meth:`to_fields`)."""
        return {n: getattr(self, n) for n in FIELDS if with_rating or n not in RATING_FIELDS}

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> Record:
        """From a Redis hash (bytes or str values) or a SQLite row mapping."""
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            raw = data.get(f.name)
            if isinstance(raw, bytes):
                raw = raw.decode("utf-8", "replace")
            if f.name in _FLOAT_FIELDS or f.name in _OPTIONAL_FLOATS:
                kwargs[f.name] = _to_float(raw, optional=f.name in _OPTIONAL_FLOATS)
            else:
                kwargs[f.name] = "" if raw is None else str(raw)
        return cls(**kwargs)


def _to_float(raw: Any, *, optional: bool) -> float | None:
    if raw is None or raw == "":
        return None if optional else 0.0
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None if optional else 0.0
    return value if math.isfinite(value) else (None if optional else 0.0)


FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Record))
RATING_FIELDS = frozenset({"rating", "rated_at"})
_OPTIONAL_FLOATS = frozenset({"score", "rated_at"})
_FLOAT_FIELDS = frozenset({"created_at", "threshold", "served_cost_usd", "shadow_cost_usd", "judge_cost_usd"})
