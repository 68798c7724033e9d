"""Asyncio micro-batcher with fair queuing by cost: callers await one result each, ONNX runs in worker threads.

The event loop only queues and groups; scoring runs in a thread pool (onnxruntime and
the tokenizer release the GIL), so the loop stays responsive. Design for throughput on
few cores, and for fairness between callers:

- Every item has a cost (about the tokens it will run, ``scorer.core.item_cost``) and a caller
  (the peer connection). Items wait in one queue per caller; batches are filled by deficit
  round robin over the callers with waiting items (each turn adds ``quantum`` to a caller's
  allowance, which its items spend), callers that arrive with nothing waiting first
  (``FairQueue``), so a caller with a 1,024-prompt BatchScore queued gets no more of the
  workers than one sending single Score calls, and the light caller's item goes into the next
  batch any worker starts. A batch holds at most ``max_batch`` items and
  about ``max_batch_cost`` cost (it stops once that is reached), which bounds how long a worker
  is held by one batch.
- Admission is by cost, not count: a caller whose queued cost would pass ``max_caller_cost``, or a
  queue whose total would pass ``max_queue_cost``, gets ``OverloadedError`` (RESOURCE_EXHAUSTED)
  instead of latency growing without bound; a heavy caller fills its own allowance, not the queue.
- While more than one caller is active (seen in the last ``share_s``), no caller holds more than
  ``workers - 1`` workers: the others' next prompt then finds a worker free instead of waiting
  behind a backlog (during a 1,024-prompt BatchScore the gateway's Score p50 was 117 ms without
  this and 23-48 ms with it in three runs on the loaded 2-vCPU VM, ``ferryman bench steady``).
  A caller alone gets every worker.
- BatchScore work (a batch made only of multi-item requests) runs on threads at nice +10
  (``bulk_nice``): the slots are the same ``workers``, but when the machine is busy the
  operating system gives interactive Score calls the CPU first.
- A free worker takes its share of what is queued (``1 / workers`` of the queued items, up to
  ``max_batch``) at once when the system is idle, so a lone request pays no batching delay.
  Only while another batch is running does it wait up to ``max_wait`` for stragglers to fill
  the batch. The rest stays queued for whichever worker frees first: a batch runs on one
  thread, so a worker that took everything while the other was busy would leave that other
  one idle (its callers' next requests only arrive after their responses), and with one
  sequence per ONNX run a bigger batch saves nothing (Score throughput at concurrency 64 rose
  8 % and 30 % in two interleaved A/B runs on the loaded 2-core development machine, p99 fell
  by 30-50 %, against taking the whole queue).
- Items whose deadline has passed, or whose caller went away, are dropped before
  inference.
- ``close`` stops intake and drains: everything queued or running completes.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence, Set
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from scorer.errors import DeadlineExceededError, OverloadedError, ShuttingDownError

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchingConfig:
    """Micro-batching and queuing knobs (costs in ``scorer.core.item_cost`` units, about tokens)."""

    max_batch: int = 64
    # One full 256-token window: a worker is never held by one batch much longer than one long
    # prompt takes, so another caller's item waits at most that long for a worker. With one
    # sequence per ONNX run a bigger batch saves only the hand-off to the worker (~0.2 ms).
    max_batch_cost: int = 256
    max_wait_s: float = 0.002
    max_queue_cost: int = 4 * 262_144
    max_caller_cost: int = 262_144  # one caller's queued cost: a full-size BatchScore of full windows
    quantum: int = 256  # allowance added per turn in the round robin (one full window)
    workers: int = 2
    # While another caller has been seen in the last ``share_s`` seconds, one caller's batches
    # hold at most ``workers - 1`` workers, so the other's next prompt finds a worker free instead
    # of waiting behind a backlog (0: no cap).
    share_s: float = 1.0
    # BatchScore work (batches made only of multi-item requests) runs on worker threads at this
    # nice value, so that on a busy machine interactive Score calls get the CPU first (Linux;
    # 0: same priority).
    bulk_nice: int = 10

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_batch_cost", "max_queue_cost", "max_caller_cost", "quantum", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, is {getattr(self, name)}")
        for name in ("max_wait_s", "share_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, is {getattr(self, name)}")
        if not 0 <= self.bulk_nice <= 19:
            raise ValueError(f"bulk_nice must be in 0-19, is {self.bulk_nice}")
        if self.max_caller_cost > self.max_queue_cost:
            raise ValueError(
                f"max caller cost ({self.max_caller_cost}) must not exceed the queue's ({self.max_queue_cost})"
            )


@dataclass(eq=False)
class _Job(Generic[T]):
    items: Sequence[T]
    future: asyncio.Future[np.ndarray]
    deadline: float | None
    caller: str
    results: np.ndarray = field(init=False)
    remaining: int = field(init=False)

    def __post_init__(self) -> None:
        self.results = np.empty(len(self.items), dtype=np.float64)
        self.remaining = len(self.items)


# (job, index of the item in the job, its cost)
_Entry = tuple[_Job[T], int, int]


class FairQueue(Generic[T]):
    """One FIFO per caller, drained by deficit round robin on item cost, sparse callers first.

    The scheduler of FQ-CoDel (RFC 8290, section 4.2): a caller that arrives with nothing waiting
    joins the *new* list with an allowance of ``quantum`` and is served before the *old* list,
    so a caller sending one prompt at a time (a gateway) goes ahead of a backlog; a caller whose
    allowance runs out while it still has items waiting gets ``quantum`` more and joins the end of
    the old list, where callers with backlogs take turns by cost.
    """

    def __init__(self, quantum: int) -> None:
        self.quantum = quantum
        self._queues: dict[str, collections.deque[_Entry[T]]] = {}
        self._cost: dict[str, int] = {}
        self._deficit: dict[str, int] = {}
        self._new: collections.deque[str] = collections.deque()
        self._old: collections.deque[str] = collections.deque()
        self.items = 0
        self.cost = 0

    def __len__(self) -> int:
        return self.items

    def caller_cost(self, caller: str) -> int:
        """Cost ``caller`` has waiting."""
        return self._cost.get(caller, 0)

    def callers(self) -> int:
        """Callers with waiting items."""
        return len(self._new) + len(self._old)

    def push(self, job: _Job[T], costs: Sequence[int]) -> None:
        caller = job.caller
        queue = self._queues.get(caller)
        if queue is None:
            queue = self._queues[caller] = collections.deque()
            self._cost[caller] = 0
            self._deficit[caller] = self.quantum
            self._new.append(caller)
        queue.extend((job, i, c) for i, c in enumerate(costs))
        total = sum(costs)
        self._cost[caller] += total
        self.items += len(costs)
        self.cost += total

    def waiting(self) -> set[str]:
        """Callers with items waiting."""
        return set(self._queues)

    def pop(self, skip: Set[str] = frozenset()) -> _Entry[T] | None:
        """The next item: new callers first, then old ones in turn, each while its allowance lasts.

        Callers in ``skip`` keep their place and allowance; None when no other caller has items.
        """
        while True:
            found = next(((turns, c) for turns in (self._new, self._old) for c in turns if c not in skip), None)
            if found is None:
                return None
            turns, caller = found
            queue = self._queues[caller]
            job, i, cost = queue[0]
            if self._deficit[caller] < cost:
                self._deficit[caller] += self.quantum
                turns.remove(caller)
                self._old.append(caller)
                continue
            queue.popleft()
            self._deficit[caller] -= cost
            self._cost[caller] -= cost
            self.items -= 1
            self.cost -= cost
            if not queue:  # an idle caller keeps no allowance
                turns.remove(caller)
                del self._queues[caller], self._cost[caller], self._deficit[caller]
            return job, i, cost

    def drain(self) -> list[_Job[T]]:
        """Empty the queue; the jobs that had items waiting."""
        jobs = {id(job): job for queue in self._queues.values() for job, _, _ in queue}
        self._queues.clear()
        self._cost.clear()
        self._deficit.clear()
        self._new.clear()
        self._old.clear()
        self.items = self.cost = 0
        return list(jobs.values())


def _lower_priority(nice: int) -> None:
    """Raise the calling thread's nice value (Linux: per thread) by ``nice``; a thread pool initializer."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + nice)
    except OSError as exc:  # not permitted here: run at the same priority
        log.warning("cannot lower the priority of BatchScore worker threads: %s", exc)


class MicroBatcher(Generic[T]):
    """Groups submitted items into batches for ``score_fn`` (run in worker threads)."""

    def __init__(
        self,
        score_fn: Callable[[Sequence[T]], np.ndarray],
        config: BatchingConfig,
        *,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._score_fn = score_fn
        self.config = config
        self._on_batch = on_batch
        self._queue: FairQueue[T] = FairQueue(config.quantum)
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(config.workers)
        self._inflight = 0
        self._closed = False
        self._pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="scorer-infer")
        self._bulk_pool = self._pool
        if config.bulk_nice and sys.platform.startswith("linux"):
            self._bulk_pool = ThreadPoolExecutor(
                max_workers=config.workers,
                thread_name_prefix="scorer-bulk",
                initializer=_lower_priority,
                initargs=(config.bulk_nice,),
            )
        self._dispatcher: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._holding: collections.Counter[str] = collections.Counter()  # running batches per caller
        self._seen: dict[str, float] = {}  # caller -> when it last submitted

    def queue_depth(self) -> int:
        """Items waiting for a worker."""
        return len(self._queue)

    def queued_cost(self) -> int:
        """Cost of the items waiting for a worker."""
        return self._queue.cost

    def start(self) -> None:
        """Start the dispatcher on the running loop."""
        if self._dispatcher is None:
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch(), name="scorer-batcher")

    async def submit(
        self,
        items: Sequence[T],
        deadline: float | None = None,
        *,
        caller: str = "",
        costs: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Score ``items`` (in order) for ``caller``; ``deadline`` is in ``loop.time()`` seconds.

        ``costs`` (default 1 each) is what the items spend of the caller's share and allowance.
        """
        if self._closed:
            raise ShuttingDownError("scorer is shutting down")
        if not items:
            return np.empty(0, dtype=np.float64)
        costs = [1] * len(items) if costs is None else list(costs)
        need = sum(costs)
        cfg = self.config
        mine = self._queue.caller_cost(caller)
        if mine + need > cfg.max_caller_cost:
            raise OverloadedError(
                f"scorer overloaded for this caller: {mine} cost units of its requests are queued and this one "
                f"needs {need}, limit {cfg.max_caller_cost} per caller; retry with backoff"
            )
        if self._queue.cost + need > cfg.max_queue_cost:
            raise OverloadedError(
                f"scorer overloaded: {self._queue.cost} cost units queued by {self._queue.callers()} callers and "
                f"this request needs {need}, limit {cfg.max_queue_cost}; retry with backoff"
            )
        loop = asyncio.get_running_loop()
        self._note(caller, loop.time())
        job: _Job[T] = _Job(items, loop.create_future(), deadline, caller)
        self._queue.push(job, costs)
        self._wakeup.set()
        return await job.future

    async def close(self, timeout: float | None = None) -> None:
        """Refuse new work, finish what is queued or running, then stop the workers."""
        self._closed = True
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        while (self._queue or self._inflight) and (end is None or loop.time() < end):
            await asyncio.sleep(0.005)
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        for job in self._queue.drain():
            if not job.future.done():
                job.future.set_exception(ShuttingDownError("scorer stopped before this request ran"))
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._bulk_pool.shutdown(wait=False, cancel_futures=True)

    def _note(self, caller: str, now: float) -> None:
        self._seen[caller] = now
        if len(self._seen) > 64:  # forget callers quiet for longer than the sharing window
            self._seen = {c: t for c, t in self._seen.items() if now - t < self.config.share_s}

    def _capped(self, now: float) -> set[str]:
        """Callers that already hold ``workers - 1`` workers while another caller is active."""
        cfg = self.config
        if cfg.workers < 2 or cfg.share_s <= 0:
            return set()
        active = {c for c, t in self._seen.items() if now - t < cfg.share_s} | self._queue.waiting()
        return {c for c, n in self._holding.items() if n >= cfg.workers - 1 and active - {c}}

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()
            try:
                batch = await self._collect(loop)
            except BaseException:
                self._slots.release()
                raise
            self._inflight += 1
            callers = {job.caller for job, _ in batch}
            self._holding.update(callers)
            task = loop.create_task(self._run(batch, callers))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _wait_for_items(self, timeout: float | None) -> bool:
        self._wakeup.clear()
        if timeout is None:
            await self._wakeup.wait()
            return True
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _collect(self, loop: asyncio.AbstractEventLoop) -> list[tuple[_Job[T], int]]:
        cfg = self.config
        while True:
            while not self._queue:
                await self._wait_for_items(None)
            skip = self._capped(loop.time())
            if skip and self._queue.waiting() <= skip:
                # Only callers that hold their share have work: keep this worker for the others
                # until one sends something, a batch ends, or they have been quiet for share_s.
                await self._wait_for_items(cfg.share_s)
                continue
            if self._inflight > 0 and cfg.max_wait_s > 0:
                # Another batch is running: wait briefly so this one fills up.
                end = loop.time() + cfg.max_wait_s
                while len(self._queue) < cfg.max_batch:
                    left = end - loop.time()
                    if left <= 0 or not await self._wait_for_items(left):
                        break
            # Take one worker's share and leave the rest for whichever worker frees first (see the
            # module docstring): a busy worker's callers then find work waiting when it is done.
            take = min(cfg.max_batch, -(-len(self._queue) // cfg.workers))
            batch: list[tuple[_Job[T], int]] = []
            cost = 0
            now = loop.time()
            while len(batch) < take and cost < cfg.max_batch_cost and (entry := self._queue.pop(skip)) is not None:
                job, i, item_cost = entry
                if job.future.done():  # caller cancelled, or an earlier item failed the job
                    continue
                if job.deadline is not None and now >= job.deadline:
                    job.future.set_exception(DeadlineExceededError("deadline expired before inference"))
                    continue
                batch.append((job, i))
                cost += item_cost
            if batch:
                return batch

    async def _run(self, batch: list[tuple[_Job[T], int]], callers: set[str]) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._on_batch is not None:
                self._on_batch(len(batch))
            items = [job.items[i] for job, i in batch]
            bulk = all(len(job.items) > 1 for job, _ in batch)
            try:
                scores = await loop.run_in_executor(self._bulk_pool if bulk else self._pool, self._score_fn, items)
            except Exception as exc:
                log.exception("batch of %d failed", len(batch))
                for job, _ in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                return
            for (job, i), score in zip(batch, scores, strict=True):
                job.results[i] = score
                job.remaining -= 1
                if job.remaining == 0 and not job.future.done():
                    job.future.set_result(job.results)
        finally:
            self._inflight -= 1
            self._holding.subtract(callers)
            self._holding += collections.Counter()  # drop callers that hold nothing
            self._slots.release()
            self._wakeup.set()  # a capped caller may take this worker's place
