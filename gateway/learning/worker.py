"""The learning worker: a child process that makes the shadow calls, asks the judge and does every
store write, so that the gateway's serving process only samples and hands a job over.

Why a process: a shadow job is three provider calls (the other tier's model, the judge twice) plus
a store write; in the serving event loop that cost ~4 ms of CPU per job (mostly HTTP client work),
which a client request arriving meanwhile waits for. In a child process, at ``learning.worker_nice``
(default 10), that CPU comes after the serving process's; with ``learning.worker_sched_idle`` the
worker also runs under SCHED_IDLE (Linux), so a serving process that wakes takes the core at once.
The gateway keeps admission (sampling, budget, free slots), the metrics and feedback; the worker
keeps its own provider pool, judge, redactor and store connection.

Traffic: two OS pipes (``gateway.learning.pipe``), read and written by each side's event loop: the
gateway sends :class:`Job` objects (``submit`` pickles on the loop and never blocks); the worker
sends back :class:`Report` objects, each gathering 50 ms of events (store outcome counts, whether
the store is down, the day's spend in the store, records written, shadow jobs done), applied on the
gateway's loop as they arrive.
A worker that dies is restarted by the gateway; its in-flight jobs are counted as lost. The worker
exits when told to, or when its parent is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from ferryman.logs import configure_logging
from gateway.config import GatewayConfig
from gateway.learning.guard import GuardedStore
from gateway.learning.judge import Judge, Judgement
from gateway.learning.pipe import PipeReader, PipeWriter
from gateway.learning.quality import Judged
from gateway.learning.records import Answered, Record
from gateway.learning.redact import Redactor
from gateway.learning.shadow import ShadowAnswer, ShadowRunner, partner_tier, utc_day
from gateway.learning.store import StoreError, open_store
from gateway.loop import run_loop
from gateway.providers import ProviderPool
from gateway.types import DecisionSource

log = logging.getLogger(__name__)
#: How often the worker prunes (every prune_interval_s) and checks that its parent is alive.
_TICK_S = 0.5
#: Reports gather what happened over this long: fewer wake-ups of the gateway's threads and loop.
_REPORT_EVERY_S = 0.05


@dataclass(frozen=True)
class Job:
    """One answered request: record it (for feedback), shadow it, or both."""

    answered: Answered
    record: bool
    shadow: bool
    #: The budget the gateway reserved for the shadow job.
    estimate: float = 0.0
    #: Models of the other tier whose breaker was open when the job was admitted.
    skip: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Stop:
    """Finish in-flight jobs within ``grace_s`` (then cancel them), flush writes, exit."""

    grace_s: float


@dataclass(frozen=True)
class ShadowDone:
    """A finished shadow job, for the gateway's budget and metrics."""

    response_id: str
    policy: str
    estimate: float
    model: str
    status: str
    shadow_cost_usd: float
    judgement: Judgement | None
    judged: Judged | None


@dataclass
class Report:
    """What the worker tells the gateway (sent when something happened, batched per loop turn)."""

    ops: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Seconds the store is still down for (0 = usable).
    down_for_s: float = 0.0
    #: (UTC day, that day's learning spend in the store: every replica's with Redis).
    spend: tuple[str, float] | None = None
    written: list[str] = field(default_factory=list)
    shadows: list[ShadowDone] = field(default_factory=list)
    #: Jobs (response ids) that reached the worker but could not be read: never run, never reported done.
    lost: list[str] = field(default_factory=list)


def role(stronger: bool) -> str:
    """An answer's side in a comparison: the more capable tier's is "strong" (with two tiers: its tier's name)."""
    return "strong" if stronger else "weak"


def score_of(answered: Answered) -> float | None:
    decision = answered.decision
    return decision.score if decision.source is DecisionSource.SCORED else None


def build_record(
    config: GatewayConfig,
    redact: Callable[[str], str],
    a: Answered,
    shadow: ShadowAnswer | None = None,
    judgement: Judgement | None = None,
    judge_model: str = "",
) -> Record:
    """The record of an answer, every text redacted."""
    tiers = config.tiers
    served = a.accounting.served_tier_name
    other, other_is_stronger = partner_tier(config, served)
    messages = [{"role": m.role, "content": redact(m.content)} for m in a.request.messages]
    record = Record(
        id=a.response_id,
        created_at=a.created,
        tenant=a.request.tenant,
        policy=a.decision.policy,
        messages_json=json.dumps(messages, ensure_ascii=False),
        router=a.decision.router,
        router_version=a.decision.router_version,
        score=score_of(a),
        threshold=a.decision.threshold,
        decision_source=a.decision.source.value,
        routed_tier=a.decision.tier_name or a.decision.tier.value,
        served_model=a.accounting.served_model,
        # the answers' roles in the comparison: "strong" for the more capable tier of the two
        served_tier=role(not other_is_stronger),
        served_router_model=tiers[served].router_model,
        served_answer=redact(a.completion.content),
        served_cost_usd=a.accounting.cost_usd,
        # the other tier's model: the one asked, or (not shadowed) the one that would have been
        shadow_model=shadow.model if shadow is not None else tiers[other].models[0],
        shadow_tier=role(other_is_stronger),
        shadow_router_model=tiers[other].router_model,
    )
    if shadow is not None:
        record.shadow_status = shadow.status
        record.shadow_cost_usd = shadow.cost_usd
        if shadow.completion is not None:
            record.shadow_answer = redact(shadow.completion.content)
    if judgement is not None:
        record.judge_model = judge_model
        record.judge_strong_first = judgement.strong_first
        record.judge_weak_first = judgement.weak_first
        record.verdict = judgement.verdict.value
        record.judge_cost_usd = judgement.cost_usd
    return record


# --------------------------------------------------------------------------- the gateway's side


class LearningWorker:
    """Starts, feeds, watches and stops the worker process (used by ``gateway.learning.service``)."""

    def __init__(self, config: GatewayConfig, environ: Mapping[str, str], on_report: Callable[[Report], None]) -> None:
        self._config = config
        self._environ = dict(environ)
        self._on_report = on_report
        self._ctx = multiprocessing.get_context("spawn")  # never fork a process that runs threads and a loop
        self._process: Any = None
        self._jobs: PipeWriter | None = None
        self._reports: PipeReader | None = None
        self.starts = 0
        self._started_at: float | None = None

    async def start(self) -> None:
        jobs_r, jobs_w = os.pipe()
        reports_r, reports_w = os.pipe()
        # the child's ends travel as Connections (spawn passes their descriptors to the child)
        child_ends = Connection(jobs_r, writable=False), Connection(reports_w, readable=False)

        def spawn(process: Any) -> None:
            """In a thread; it closes the child's ends once spawned (ours are copies: closed, so each side sees
            end of file when the other goes), whatever the loop does meanwhile."""
            try:
                process.start()
            finally:
                for end in child_ends:
                    end.close()

        try:
            self._process = self._ctx.Process(
                target=worker_main,
                args=(self._config, self._environ, *child_ends, os.getpid(), logging.getLogger().getEffectiveLevel()),
                name="ferryman-learning-worker",
                daemon=True,
            )
            # off the loop: spawning (pickling the config, forking and exec'ing a new interpreter) took
            # a median 2.3-2.8 ms of the serving loop on the loaded VM, up to 8 ms (docs/learning.md)
            starting = asyncio.get_running_loop().run_in_executor(None, spawn, self._process)
        except BaseException:  # no thread has the child's ends
            for end in child_ends:
                end.close()
            os.close(jobs_w)
            os.close(reports_r)
            raise
        try:
            await asyncio.shield(starting)
        except BaseException:  # a process that did start sees end of file on its jobs pipe and exits
            os.close(jobs_w)
            os.close(reports_r)
            if not starting.done():  # cancelled: the thread goes on; a process it starts is left whole to stop()
                await asyncio.wait({starting})
            raise
        self.starts += 1
        self._started_at = time.monotonic()
        self._jobs, self._reports = PipeWriter(), PipeReader()
        await self._jobs.open(jobs_w)
        # end of file: the worker exited; the gateway's watch notices and restarts it
        await self._reports.open(reports_r, self._on_report, lambda: None)

    def submit(self, job: Job) -> bool:
        """Hand a job over; never blocks. False (nothing sent) when no worker reads the pipe: it died, or
        is being replaced (the old pipe closed, the new one not open yet). Raises what pickling raises. A
        job the worker cannot read comes back in a report's ``lost`` (its response id travels beside it)."""
        return self._jobs is not None and self._jobs.send(job, job.answered.response_id)

    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def ran_s(self, now: float) -> float:
        """Seconds since the current process was started (0 before any start); ``now`` from time.monotonic."""
        return 0.0 if self._started_at is None else now - self._started_at

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def exitcode(self) -> int | None:
        return None if self._process is None else self._process.exitcode

    async def wait_exited(self, timeout_s: float) -> bool:
        """Wait (off the event loop) up to ``timeout_s`` for the current process to exit, e.g. after it was
        killed; True once it has exited or when there is none."""
        if self._process is None:
            return True
        await asyncio.to_thread(self._process.join, timeout_s)
        return not self._process.is_alive()

    async def stop(self, grace_s: float, store_timeout_s: float) -> None:
        """Ask the worker to finish (``grace_s`` for its jobs), wait for it, kill it if it does not exit."""
        if self._process is None or self._jobs is None:
            return
        if self._process.is_alive():
            self._jobs.send(Stop(grace_s))
            await asyncio.to_thread(self._process.join, grace_s + 2 * store_timeout_s + 5)
        if self._process.is_alive():
            log.warning("the learning worker did not stop in time; killing it")
            self._process.kill()
            await asyncio.to_thread(self._process.join, 5)
        await self._close_pipes()

    async def _close_pipes(self) -> None:
        if self._jobs is not None:
            await self._jobs.close(1.0)
        if self._reports is not None:
            self._reports.close()

    async def restart(self) -> None:
        """After the worker died: new pipes, a new process."""
        await self._close_pipes()
        await self.start()


# --------------------------------------------------------------------------- the worker's side


def worker_main(
    config: GatewayConfig, environ: dict[str, str], jobs: Connection, reports: Connection, parent: int, log_level: int
) -> None:
    """The worker process's entry point (``jobs``, ``reports``: its ends of the two pipes; ``log_level``: the
    gateway's, so its INFO lines — retention deletes, store state — reach the same log).

    The gateway stops its worker (a ``Stop`` with its drain's grace, or end of file on the jobs pipe), so the
    worker ignores SIGINT: a terminal's Ctrl-C reaches the whole process group, and must not kill the worker
    (with its shadow jobs) before the draining gateway hands it its ``Stop``. (Only a Ctrl-C during the new
    interpreter's start, before this line, still ends it.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(log_level, "learning-worker")
    give_way(config.learning.worker_nice)
    if config.learning.worker_sched_idle:
        sched_idle()
    jobs_fd, reports_fd = os.dup(jobs.fileno()), os.dup(reports.fileno())
    jobs.close()
    reports.close()
    run_loop(_Worker(config, environ, parent).run(jobs_fd, reports_fd))


def give_way(increment: int) -> None:
    """This process ``increment`` niceness steps below its gateway's (``learning.worker_nice``), as far as the
    OS allows: a shortfall is logged (an operator counting on it must know serving comes first by less). The
    niceness is inherited from the gateway and caps at 19, so under a gateway already at 15 the worker gets
    19, 4 steps below; under one at 19, none."""
    gateway = os.nice(0)
    try:
        now = os.nice(increment)
    except OSError as e:
        log.warning("learning.worker_nice: could not lower the worker's priority (%s); it runs at the gateway's", e)
        return
    if now - gateway < increment:
        log.warning(
            "learning.worker_nice: the worker runs at niceness %d, only %d below its gateway's %d (asked %d; 19 is"
            " the lowest priority): serving comes first by less than configured (run the gateway at a lower niceness)",
            now,
            now - gateway,
            gateway,
            increment,
        )


def sched_idle() -> None:
    """This process under SCHED_IDLE where the OS has it (Linux): any other process that wakes preempts it at
    once, where under niceness alone the kernel may first let it finish its time slice."""
    idle = getattr(os, "SCHED_IDLE", None)
    if idle is None or not hasattr(os, "sched_setscheduler"):
        log.warning("learning.worker_sched_idle: SCHED_IDLE is not available here; the worker runs at its niceness")
        return
    try:
        os.sched_setscheduler(0, idle, os.sched_param(0))
    except OSError as e:
        log.warning("learning.worker_sched_idle: could not set SCHED_IDLE (%s); the worker runs at its niceness", e)


class _Worker:
    def __init__(self, config: GatewayConfig, environ: dict[str, str], parent: int):
        lc = config.learning
        self._config = config
        self._lc = lc
        self._reports = PipeWriter()
        self._parent = parent
        self._report = Report()
        self._flush_scheduled = False
        store = open_store(
            lc.store.resolve_url(environ),
            namespace=lc.store.namespace,
            retention_s=lc.store.retention_days * 86_400,
            timeout_s=lc.store.timeout_s,
        )
        self.store = GuardedStore(store, lc.store, self._count, on_put=self._stored)
        #: Records stored since the last prune; at ``store.prune_after_puts`` the next prune starts at once.
        self._stored_since_prune = 0
        self._over_cap = asyncio.Event()
        self._redact = Redactor(lc.redact, lc.store.max_text_chars)
        # its own connections, on the lean transport: its CPU is mostly these calls (gateway.providers.lean)
        self._pool = ProviderPool(config.models, environ, config.limits.max_response_bytes, lean=True)
        self._runner: ShadowRunner | None = None
        if lc.shadow.sample_rate > 0:
            judge_model = config.models[lc.judge.model]
            judge = Judge(self._pool[judge_model.name], judge_model, lc.judge, lc.shadow.timeout_s)
            self._runner = ShadowRunner(config, self._pool, judge)
        self._tasks: set[asyncio.Task[None]] = set()
        #: ``shadow.max_concurrent`` shadow jobs run at once; the others wait (``max_queued`` at most: admission).
        self._running = asyncio.Semaphore(lc.shadow.max_concurrent)
        self._stop: asyncio.Future[Stop] | None = None

    # ---------------------------------------------------------------- reports

    def _count(self, op: str, outcome: str) -> None:
        self._report.ops[(op, outcome)] += 1
        self._changed()

    def _changed(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(_REPORT_EVERY_S, self._flush)

    def _flush(self) -> None:
        if not self._flush_scheduled:
            return  # flushed already (at stop)
        self._flush_scheduled = False
        report, self._report = self._report, Report()
        report.down_for_s = self.store.down_for()
        self._reports.send(report)

    # ---------------------------------------------------------------- the loop

    async def run(self, jobs_fd: int, reports_fd: int) -> None:
        loop = asyncio.get_running_loop()
        self._stop = loop.create_future()
        stop = self._stop
        await self._reports.open(reports_fd)
        jobs = PipeReader()
        # end of file: the gateway is gone (or closed its end after a Stop): stop now
        await jobs.open(jobs_fd, self._take, lambda: self._take(Stop(0.0)), self._lost)
        with contextlib.suppress(StoreError):
            await self.store.call("open", self.store.store.open)
            await self._sync_spend()
        ticker = asyncio.create_task(self._tick())
        done = await stop
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=done.grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.store.flush(self._lc.store.timeout_s)
        self._flush_scheduled = True
        self._flush()
        jobs.close()
        await self._reports.close(self._lc.store.timeout_s)
        await self.store.store.close()
        await self._pool.aclose()

    def _take(self, item: Job | Stop) -> None:
        if isinstance(item, Stop):
            if self._stop is not None and not self._stop.done():
                self._stop.set_result(item)
            return
        task = asyncio.create_task(self._handle(item))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _lost(self, response_id: str) -> None:
        """A job that arrived but could not be read (or taken): reported, so the gateway frees its slot."""
        self._report.lost.append(response_id)
        self._changed()

    def _stored(self) -> None:
        """A record was stored (a new one or an update: an update only starts a prune early)."""
        self._stored_since_prune += 1
        if self._stored_since_prune >= self._lc.store.prune_after_puts:
            self._over_cap.set()

    async def _nap(self) -> None:
        """``_TICK_S``, or until enough records were stored to prune (unless that is already due: then the
        store was down at the last tick, and the loop must not spin)."""
        if self._over_cap.is_set():
            await asyncio.sleep(_TICK_S)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_TICK_S):
                await self._over_cap.wait()

    async def _tick(self) -> None:
        """Parent alive? Retention and size cap, and the day's spend, every ``prune_interval_s``; the size cap
        also once ``store.prune_after_puts`` records were stored since the last prune."""
        next_prune = time.monotonic() + self._lc.store.prune_interval_s
        deleted = 0  # since the last line that said so: one line per prune_interval_s at most
        while True:
            await self._nap()
            if os.getppid() != self._parent:  # the gateway is gone (killed): so are we
                if self._stop is not None and not self._stop.done():
                    self._stop.set_result(Stop(0.0))
                return
            timed = time.monotonic() >= next_prune
            if not (timed or self._over_cap.is_set()) or not self.store.usable():
                continue
            if timed:
                next_prune = time.monotonic() + self._lc.store.prune_interval_s
            self._over_cap.clear()
            self._stored_since_prune = 0
            with contextlib.suppress(StoreError):
                deleted += await self.store.call("prune", self._prune)
                if timed:
                    if deleted:
                        log.info("learning store: %d records past retention or the size cap deleted", deleted)
                    deleted = 0
                    await self._sync_spend()

    async def _prune(self) -> int:
        cfg = self._lc.store
        return await self.store.store.prune(time.time() - cfg.retention_days * 86_400, cfg.max_records)

    async def _sync_spend(self, add: float = 0.0) -> None:
        day = utc_day(time.time())
        store = self.store.store
        total = await self.store.call("spend", lambda: store.add_spend(day, add) if add else store.spend(day))
        self._report.spend = (day, total)
        self._changed()

    # ---------------------------------------------------------------- jobs

    async def _handle(self, job: Job) -> None:
        a = job.answered
        try:
            if job.record:
                self.store.write(
                    a.response_id, lambda: build_record(self._config, self._redact, a), done=lambda: self._written(a)
                )
            if job.shadow:
                await self._shadow(job)
        except Exception:
            log.exception("learning: a job failed")

    def _written(self, a: Answered) -> None:
        self._report.written.append(a.response_id)
        self._changed()

    async def _shadow(self, job: Job) -> None:
        assert self._runner is not None
        a = job.answered
        answer: ShadowAnswer | None = None
        judgement: Judgement | None = None
        judged: Judged | None = None
        try:
            async with self._running:  # beyond max_concurrent running, a job waits here (admission bounds them)
                answer = await self._runner.ask_other(a.request, a.accounting.served_tier_name, job.skip)
                if answer.completion is not None:
                    served, other = a.completion.content, answer.completion.content
                    strong, weak = (other, served) if answer.stronger else (served, other)
                    judgement = await self._runner.judge_pair(a.request, strong, weak)
                    shadow, verdict = answer, judgement
                    judge_model = self._runner.judge.model
                    write = self.store.write(
                        a.response_id,
                        lambda: build_record(self._config, self._redact, a, shadow, verdict, judge_model),
                    )
                    if write is not None:  # reported done once stored, so the gateway's view follows the store's
                        await asyncio.wait({write})
                    if judgement.verdict.is_label:
                        costs = (a.accounting.cost_usd, answer.cost_usd)
                        strong_cost, weak_cost = costs[::-1] if answer.stronger else costs
                        served_role = role(not answer.stronger)
                        judged = Judged(judgement.verdict, served_role, score_of(a), strong_cost, weak_cost)
                elif job.record:  # keep what happened with the answer's record
                    failed = answer
                    self.store.write(a.response_id, lambda: build_record(self._config, self._redact, a, failed))
            status = answer.status
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        except Exception:
            status = "error"
            log.exception("learning: a shadow job failed")
        finally:
            shadow_cost = answer.cost_usd if answer is not None else 0.0
            spent = shadow_cost + (judgement.cost_usd if judgement is not None else 0.0)
            if spent > 0:  # first into the store's day total, then reported: the gateway sees both agree
                with contextlib.suppress(StoreError):
                    await self._sync_spend(spent)
            model = answer.model if answer is not None else ""
            self._report.shadows.append(
                ShadowDone(
                    a.response_id, a.decision.policy, job.estimate, model, status, shadow_cost, judgement, judged
                )
            )
            self._changed()
