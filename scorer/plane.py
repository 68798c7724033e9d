"""The scoring plane: the one path from a domain request to a win rate, shared by every transport.

The gRPC servicer (``scorer.server``) and ``ferryman score`` both call a ``ScoringPlane``, as
kserve's gRPC and REST servers share one ``DataPlane``: validate and estimate cost
(``ScorerCore.prepare``), queue fairly per caller and batch (``MicroBatcher``), score in worker
threads, wrap the results. The server object owns only the lifecycle (ports, health, stop).
Errors are the domain's (``scorer.errors``); mapping them to status codes is the transport's job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scorer.batching import BatchingConfig, MicroBatcher
from scorer.core import Prepared, ScoreQuery, ScorerCore, ScoreResult

LOCAL_CALLER = "local"


@dataclass(frozen=True)
class WindowTiming:
    """How long one Score of a prompt that fills a router's window took at start-up."""

    router: str
    window: int
    seconds: float


class ScoringPlane:
    """Validation, fair queuing, batching and scoring for every transport; start it inside the serving loop."""

    def __init__(
        self, core: ScorerCore, batching: BatchingConfig, *, on_batch: Callable[[int], None] | None = None
    ) -> None:
        self.core = core
        self.batcher: MicroBatcher[Prepared] = MicroBatcher(core.score_prepared, batching, on_batch=on_batch)

    def start(self) -> None:
        """Start batching on the running event loop."""
        self.batcher.start()

    async def close(self, timeout: float | None = None) -> None:
        """Refuse new work, finish what is queued or running."""
        await self.batcher.close(timeout=timeout)

    async def score(
        self, query: ScoreQuery, *, caller: str = LOCAL_CALLER, deadline: float | None = None
    ) -> ScoreResult:
        """One query's result; ``deadline`` in ``loop.time()`` seconds."""
        item = self.core.prepare(query)
        scores = await self.batcher.submit([item], deadline, caller=caller, costs=[item.cost])
        return self.core.result(item, float(scores[0]))

    async def score_batch(
        self, queries: Sequence[ScoreQuery], *, caller: str = LOCAL_CALLER, deadline: float | None = None
    ) -> list[ScoreResult]:
        """Results in order; the first bad query fails the whole batch, naming its index."""
        items = self.core.prepare_batch(queries)
        scores = await self.batcher.submit(items, deadline, caller=caller, costs=[it.cost for it in items])
        return [self.core.result(it, float(s)) for it, s in zip(items, scores, strict=True)]

    async def time_full_windows(self) -> list[WindowTiming]:
        """Score, per router, a prompt past its window twice, in a worker thread; the second time is the steady cost.

        Run at start-up, before any caller: it pays onnxruntime's first-run cost before the first
        caller does, and tells operators what a long prompt costs on this machine (``scorer.server``).
        It does not go through the queue, so the queue's limits cannot refuse it.
        """
        out = []
        for name, router in self.core.routers.items():
            spec = router.encoder_spec
            if spec is None:
                continue
            item = self.core.prepare(ScoreQuery(router=name, prompt=" ".join(["word"] * (2 * spec.max_tokens))))
            seconds = 0.0
            for _ in range(2):
                started = time.perf_counter()
                await asyncio.to_thread(self.core.score_prepared, [item])
                seconds = time.perf_counter() - started
            out.append(WindowTiming(name, spec.max_tokens, seconds))
        return out
