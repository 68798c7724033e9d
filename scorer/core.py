"""The scorer's domain core: load routers, validate requests, score batches.

Plain Python, no gRPC: the server, the ``ferryman score`` command and tests all
use it. ``prepare`` validates one request (raising domain errors from
``scorer.errors``); ``score_prepared`` scores a batch of prepared requests
synchronously (it is what the micro-batcher runs in worker threads), with one
encoder pass per distinct encoder window shared by every embedding router.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

import numpy as np

from scorer.artifacts import EncoderSpec, discover_artifacts, load_artifact
from scorer.encoder import Activity, Encoder, Precision, Threads, default_idle_threads
from scorer.errors import ArtifactError, InvalidInputError, UnknownModelError, UnknownRouterError
from scorer.routers import LoadContext, Router, load_router

log = logging.getLogger(__name__)


class TurnSelection(Enum):
    """Which part of a conversation is scored."""

    LAST_USER = "last_user"
    ALL_USER = "all_user"


class Turn(Protocol):
    """One chat turn as the core reads it: ``Message`` or the proto ``ChatMessage`` as received."""

    @property
    def role(self) -> str: ...

    @property
    def content(self) -> str: ...


@dataclass(frozen=True)
class Message:
    """One chat turn."""

    role: str
    content: str


@dataclass(frozen=True)
class ScoreQuery:
    """One request: a prompt or a conversation, a router, optionally a model pair.

    ``conversation`` may be the received proto messages themselves: the core checks their count
    before reading any of them, so a request with millions of turns is refused at once.
    """

    router: str
    prompt: str | None = None
    conversation: Sequence[Turn] | None = None
    strong_model: str = ""
    weak_model: str = ""
    turns: TurnSelection = TurnSelection.LAST_USER


@dataclass(frozen=True)
class Prepared:
    """A validated query, ready for the batcher; ``cost`` is what it spends of its caller's share."""

    router: str
    text: str
    strong_model: str
    weak_model: str
    strong: int
    weak: int
    cost: int = 1


@dataclass(frozen=True)
class ScoreResult:
    """The prediction and what produced it."""

    strong_win_rate: float
    router: str
    router_version: str
    strong_model: str
    weak_model: str


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; a request past a limit is refused as INVALID_ARGUMENT, naming it.

    Cost grows with the tokens a router runs, which the window caps; what a request can make the
    scorer do besides is bounded here. The prompt may be long: only its head and tail are tokenized.
    """

    max_prompt_chars: int = 1_000_000  # characters of the text a router scores
    max_messages: int = 1024  # turns in one conversation (checked before any is read)
    max_batch_items: int = 1024  # requests in one BatchScore
    # estimated tokens of one request (item_cost summed): 1,024 full 256-token windows
    max_request_cost: int = 262_144

    def __post_init__(self) -> None:
        if min(self.max_prompt_chars, self.max_messages, self.max_batch_items, self.max_request_cost) < 1:
            raise ValueError(f"limits must be >= 1: {self}")


# Fixed cost of an item (tokenizer call, the router head, the hand-offs) in token units; a short
# prompt's ONNX run costs about as much as this many tokens of a long one.
ITEM_OVERHEAD = 8
_CHARS_PER_TOKEN = 4  # estimate before tokenizing: English wordpieces average ~4.5 characters


def item_cost(text: str, router: Router) -> int:
    """Estimated cost of scoring ``text`` with ``router``: tokens it will run (at most its window), plus overhead."""
    spec = router.encoder_spec
    if spec is None:  # no encoder (random)
        return 1
    return min(spec.max_tokens, -(-len(text) // _CHARS_PER_TOKEN)) + ITEM_OVERHEAD


def select_text(query: ScoreQuery, max_messages: int) -> str:
    """The text a router scores: the prompt, or the chosen user turn(s) of a conversation."""
    if query.prompt is not None:
        return query.prompt
    conversation = query.conversation or ()
    if len(conversation) > max_messages:
        raise InvalidInputError(
            f"conversation has {len(conversation)} messages; the limit is {max_messages} "
            "(send only the turns to score: the last user turn, or the user turns)"
        )
    if query.turns is TurnSelection.ALL_USER:
        turns = [m.content for m in conversation if m.role == "user"]
        if turns:
            return "\n\n".join(turns)
    else:
        for m in reversed(conversation):
            if m.role == "user":
                return m.content
    raise InvalidInputError("conversation has no user turn to score")


class ScorerCore:
    """Every loaded router plus the shared encoder(s)."""

    def __init__(
        self,
        routers: dict[str, Router],
        encoders: dict[EncoderSpec, Encoder],
        limits: Limits,
        activity: Activity | None = None,
    ) -> None:
        if not routers:
            raise ArtifactError("no routers loaded")
        self.routers = dict(sorted(routers.items()))
        self.encoders = encoders
        self.limits = limits
        self.rows_per_run = 1  # see LoadContext.rows_per_run
        # Scoring calls running now; the loaded sessions read it to give a lone call the idle cores.
        self.activity = activity or Activity()

    @classmethod
    def load(
        cls,
        routers_dir: Path,
        encoder_dir: Path,
        *,
        precision: Precision = "int8",
        threads: int = 1,
        idle_threads: int | None = None,
        rows_per_run: int = 1,
        limits: Limits | None = None,
        only: Sequence[str] | None = None,
    ) -> ScorerCore:
        """Load and validate every artifact under ``routers_dir`` (or only the named ones).

        ``threads``: onnxruntime intra-op threads per run while other scoring calls run;
        ``idle_threads`` (default ``default_idle_threads()``): for a call that runs alone.
        """
        activity = Activity()
        plan = Threads(threads, default_idle_threads() if idle_threads is None else idle_threads, activity)
        paths = discover_artifacts(routers_dir)
        if not paths:
            raise ArtifactError(f"{routers_dir}: no router artifacts (subdirectories with manifest.json)")
        encoder_name = Encoder.read_meta(encoder_dir).get("name", "")
        ctx = LoadContext(encoder_dir, str(encoder_name), threads=plan, rows_per_run=rows_per_run)
        routers: dict[str, Router] = {}
        for path in paths:
            artifact = load_artifact(path)
            name = artifact.manifest.name
            if only is not None and name not in only:
                continue
            if name in routers:
                raise ArtifactError(f"{path / 'manifest.json'}: duplicate router name {name!r}")
            router = load_router(artifact, ctx)
            spec = router.encoder_spec
            if spec is not None and router.needs_embeddings and spec.name != ctx.encoder_name:
                raise ArtifactError(
                    f"{path / 'manifest.json'}: router needs encoder {spec.name!r}, "
                    f"{encoder_dir} has {ctx.encoder_name or 'none'!r}"
                )
            routers[name] = router
            log.info("loaded router %s (%s, version %s)", name, artifact.manifest.kind, artifact.manifest.version)
        missing = sorted(set(only or ()) - set(routers))
        if missing:
            raise ArtifactError(f"{routers_dir}: requested routers not found: {', '.join(missing)}")
        encoders: dict[EncoderSpec, Encoder] = {}
        for router in routers.values():
            spec = router.encoder_spec
            if router.needs_embeddings and spec is not None and spec not in encoders:
                encoders[spec] = Encoder(encoder_dir, precision=precision, spec=spec, threads=plan)
        core = cls(routers, encoders, limits or Limits(), activity)
        core.rows_per_run = rows_per_run
        return core

    def router(self, name: str) -> Router:
        """A loaded router by name; raises ``UnknownRouterError`` listing the loaded ones."""
        try:
            return self.routers[name]
        except KeyError:
            known = ", ".join(self.routers)
            raise UnknownRouterError(f"unknown router {name!r}; loaded routers: {known}") from None

    def prepare(self, query: ScoreQuery) -> Prepared:
        """Validate one query; raises a domain error for any bad input."""
        if not query.router:
            raise InvalidInputError("router is required")
        router = self.router(query.router)
        text = select_text(query, self.limits.max_messages)
        if len(text) > self.limits.max_prompt_chars:
            raise InvalidInputError(f"prompt has {len(text)} characters; the limit is {self.limits.max_prompt_chars}")
        if not text.strip():
            raise InvalidInputError("prompt is empty")
        m = router.manifest
        strong = query.strong_model or m.default_strong
        weak = query.weak_model or m.default_weak
        si, wi = router.model_index(strong), router.model_index(weak)
        if si == wi:
            raise InvalidInputError(f"strong model {strong!r} and weak model {weak!r} are the same model")
        return Prepared(query.router, text, strong, weak, si, wi, item_cost(text, router))

    def prepare_batch(self, queries: Sequence[ScoreQuery]) -> list[Prepared]:
        """Validate a batch request; the first bad item fails the whole request, naming its index."""
        if not queries:
            raise InvalidInputError("batch has no requests")
        if len(queries) > self.limits.max_batch_items:
            raise InvalidInputError(f"batch has {len(queries)} items; the limit is {self.limits.max_batch_items}")
        out = []
        for i, q in enumerate(queries):
            try:
                out.append(self.prepare(q))
            except (InvalidInputError, UnknownRouterError, UnknownModelError) as exc:
                raise type(exc)(f"requests[{i}]: {exc}") from None
        self.check_cost(out)
        return out

    def check_cost(self, items: Sequence[Prepared]) -> None:
        """Refuse a request whose estimated cost passes ``max_request_cost`` (it could never be admitted)."""
        cost = sum(it.cost for it in items)
        if cost > self.limits.max_request_cost:
            raise InvalidInputError(
                f"request needs about {cost} tokens of scoring; the limit is {self.limits.max_request_cost} "
                "per request: split it"
            )

    def score_prepared(self, items: Sequence[Prepared]) -> np.ndarray:
        """Win rates for prepared items (any mix of routers), in order."""
        with self.activity.running():
            return self._score_prepared(items)

    def _score_prepared(self, items: Sequence[Prepared]) -> np.ndarray:
        out = np.empty(len(items), dtype=np.float64)
        by_router: dict[str, list[int]] = defaultdict(list)
        for i, it in enumerate(items):
            by_router[it.router].append(i)
        embeddings = self._embed(items, by_router)
        for name, idx in by_router.items():
            router = self.routers[name]
            texts = [items[i].text for i in idx]
            emb = (
                np.stack([embeddings[items[i].text, router.encoder_spec] for i in idx])
                if router.needs_embeddings
                else None
            )
            strong = np.array([items[i].strong for i in idx], dtype=np.int64)
            weak = np.array([items[i].weak for i in idx], dtype=np.int64)
            out[idx] = router.score(texts, emb, strong, weak)
        return out

    def _embed(
        self, items: Sequence[Prepared], by_router: dict[str, list[int]]
    ) -> dict[tuple[str, EncoderSpec | None], np.ndarray]:
        """One encoder pass per encoder window over the distinct texts of embedding routers."""
        wanted: dict[EncoderSpec, dict[str, None]] = defaultdict(dict)
        for name, idx in by_router.items():
            router = self.routers[name]
            if router.needs_embeddings and router.encoder_spec is not None:
                for i in idx:
                    wanted[router.encoder_spec][items[i].text] = None
        found: dict[tuple[str, EncoderSpec | None], np.ndarray] = {}
        for spec, texts in wanted.items():
            unique = list(texts)
            vecs = self.encoders[spec].encode(unique, rows_per_run=self.rows_per_run)
            found.update(((t, spec), v) for t, v in zip(unique, vecs, strict=True))
        return found

    def result(self, item: Prepared, rate: float) -> ScoreResult:
        """Wrap a win rate with what produced it."""
        m = self.routers[item.router].manifest
        return ScoreResult(float(rate), item.router, m.version, item.strong_model, item.weak_model)

    def score(self, queries: Sequence[ScoreQuery]) -> list[ScoreResult]:
        """Validate and score synchronously (the ``ferryman score`` command and tests)."""
        items = self.prepare_batch(queries)
        return [self.result(it, r) for it, r in zip(items, self.score_prepared(items), strict=True)]
