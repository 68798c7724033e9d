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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

import numpy as np

from scorer import versions
from scorer.artifacts import Artifact, EncoderSpec, load_artifact
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
    """A validated query, ready for the batcher; ``cost`` is what it spends of its caller's share.

    ``handle`` is the router object the query was validated against, and ``artifact_version`` its
    version: a query scores on them even if a new version is installed while it waits
    (``scorer.reload``), so its model indices and the version it reports always match.
    """

    router: str
    text: str
    strong_model: str
    weak_model: str
    strong: int
    weak: int
    handle: Router
    artifact_version: str
    cost: int = 1


@dataclass(frozen=True)
class ScoreResult:
    """The prediction and what produced it."""

    strong_win_rate: float
    router: str
    router_version: str
    strong_model: str
    weak_model: str
    artifact_version: str = ""  # versions.Resolved.artifact_version: "<version>@<manifest digest>"


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
        # Where each router was loaded from, and which version serves (scorer.versions); a reload
        # replaces a router, its version and the encoders dict as new objects (copy on write).
        self.sources: dict[str, versions.Resolved] = {}
        self.artifact_versions: dict[str, str] = dict.fromkeys(self.routers, "")
        self.load_context: LoadContext | None = None
        self.precision: Precision = "int8"
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
        found = versions.discover(routers_dir)
        if not found:
            raise ArtifactError(f"{routers_dir}: no router artifacts (subdirectories with manifest.json)")
        meta = Encoder.read_meta(encoder_dir)
        ctx = LoadContext(
            encoder_dir,
            str(meta.get("name", "")),
            threads=plan,
            rows_per_run=rows_per_run,
            encoder_base=Encoder.base_digests(meta),
        )
        routers: dict[str, Router] = {}
        sources: dict[str, versions.Resolved] = {}
        for resolved in found:
            artifact = load_artifact(resolved.path)
            name = artifact.manifest.name
            if only is not None and name not in only:
                continue
            if name in routers:
                raise ArtifactError(f"{resolved.path / 'manifest.json'}: duplicate router name {name!r}")
            routers[name] = _load_checked(artifact, ctx)
            sources[name] = resolved
            log.info(
                "loaded router %s (%s, version %s, %s)",
                name,
                artifact.manifest.kind,
                artifact.manifest.version,
                resolved.artifact_version,
            )
        missing = sorted(set(only or ()) - set(routers))
        if missing:
            raise ArtifactError(f"{routers_dir}: requested routers not found: {', '.join(missing)}")
        core = cls(routers, {}, limits or Limits(), activity)
        core.rows_per_run = rows_per_run
        core.load_context, core.precision = ctx, precision
        core.encoders = core.encoders_for(routers.values())
        core.sources = sources
        core.artifact_versions = {name: r.artifact_version for name, r in sources.items()}
        return core

    def encoders_for(self, routers: Iterable[Router]) -> dict[EncoderSpec, Encoder]:
        """The loaded encoders plus one per encoder window ``routers`` need that none serves yet."""
        ctx = self.load_context
        out = dict(self.encoders)
        for router in routers:
            spec = router.encoder_spec
            if router.needs_embeddings and spec is not None and spec not in out and ctx is not None:
                out[spec] = Encoder(ctx.encoder_dir, precision=self.precision, spec=spec, threads=ctx.threads)
        return out

    def load_version(self, name: str, resolved: versions.Resolved) -> tuple[Router, dict[EncoderSpec, Encoder]]:
        """Load another version of router ``name`` (any thread); ``install`` it on the serving loop.

        Raises ``ArtifactError`` naming the file if it is bad or is not router ``name``.
        """
        if self.load_context is None:
            raise ArtifactError(f"router {name!r}: this core was not loaded from a routers directory")
        artifact = load_artifact(resolved.path)
        if artifact.manifest.name != name:
            raise ArtifactError(
                f"{resolved.path / 'manifest.json'}: names router {artifact.manifest.name!r}, expected {name!r}"
            )
        router = _load_checked(artifact, self.load_context)
        return router, self.encoders_for([router])

    def install(
        self, name: str, router: Router, resolved: versions.Resolved, encoders: dict[EncoderSpec, Encoder]
    ) -> None:
        """Serve ``router`` as ``name`` from now on. Call on the serving event loop, between requests.

        Each mapping is replaced by a new one, never changed in place: a batch scoring in a
        worker thread keeps the objects its items were prepared with.
        """
        self.encoders = encoders
        self.routers = dict(sorted({**self.routers, name: router}.items()))
        self.sources = {**self.sources, name: resolved}
        self.artifact_versions = {**self.artifact_versions, name: resolved.artifact_version}

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
        version = self.artifact_versions.get(query.router, "")
        return Prepared(query.router, text, strong, weak, si, wi, router, version, item_cost(text, router))

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
        # Grouped by the router object each item was prepared with (two versions of one name may mix).
        by_router: dict[int, list[int]] = defaultdict(list)
        for i, it in enumerate(items):
            by_router[id(it.handle)].append(i)
        embeddings = self._embed(items, by_router)
        for idx in by_router.values():
            router = items[idx[0]].handle
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
        self, items: Sequence[Prepared], by_router: dict[int, list[int]]
    ) -> dict[tuple[str, EncoderSpec | None], np.ndarray]:
        """One encoder pass per encoder window over the distinct texts of embedding routers."""
        wanted: dict[EncoderSpec, dict[str, None]] = defaultdict(dict)
        encoders = self.encoders  # one snapshot: a reload may replace the dict meanwhile
        for idx in by_router.values():
            router = items[idx[0]].handle
            if router.needs_embeddings and router.encoder_spec is not None:
                for i in idx:
                    wanted[router.encoder_spec][items[i].text] = None
        found: dict[tuple[str, EncoderSpec | None], np.ndarray] = {}
        for spec, texts in wanted.items():
            unique = list(texts)
            vecs = encoders[spec].encode(unique, rows_per_run=self.rows_per_run)
            found.update(((t, spec), v) for t, v in zip(unique, vecs, strict=True))
        return found

    def result(self, item: Prepared, rate: float) -> ScoreResult:
        """Wrap a win rate with what produced it."""
        m = item.handle.manifest
        return ScoreResult(
            float(rate), item.router, m.version, item.strong_model, item.weak_model, item.artifact_version
        )

    def score(self, queries: Sequence[ScoreQuery]) -> list[ScoreResult]:
        """Validate and score synchronously (the ``ferryman score`` command and tests)."""
        items = self.prepare_batch(queries)
        return [self.result(it, r) for it, r in zip(items, self.score_prepared(items), strict=True)]


def _load_checked(artifact: Artifact, ctx: LoadContext) -> Router:
    """The router an artifact describes, checked against the encoder the scorer serves."""
    router = load_router(artifact, ctx)
    spec = router.encoder_spec
    if spec is not None and router.needs_embeddings and spec.name != ctx.encoder_name:
        raise ArtifactError(
            f"{artifact.root / 'manifest.json'}: router needs encoder {spec.name!r}, "
            f"{ctx.encoder_dir} has {ctx.encoder_name or 'none'!r}"
        )
    return router
