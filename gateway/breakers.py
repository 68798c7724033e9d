"""Circuit breakers: one per provider deployment, opened by a failure rate over a time window.

What a breaker sees is one outcome per request per model (never one per retry), reported by
``gateway.resilience`` once the request's fate is known:

- ``SUCCESS``: the model served the request;
- ``FAILURE``: the model failed the request with a provider fault (5xx, 429, connect error,
  provider timeout, malformed answer, a stream broken after its first token) *and* the fault is
  the model's: the same request was then served by another model, or the stream had started.
  While the model serves other requests, a request that fails on it again and has never been
  served by it (a client repeating one request the model chokes on) counts once: one bad request
  never opens a healthy model's breaker for everyone. Every failure counts while the model serves
  no one (an outage), and once it has served that same request (a flaky model under repeated
  requests);
- ``UNATTRIBUTED``: the model failed the request, and so did every other model the request
  tried. That is what a "poison" request looks like (a prompt that makes every provider fail),
  and also what an outage of everything it tried looks like. ``gateway.resilience`` tells them
  apart when the request ends: if any model it tried has served other requests in its window,
  the request is poison and no breaker hears of it; otherwise each model it tried gets an
  unattributed failure, which counts once per distinct request (a client retrying the same
  failing request is one request) and only while the model serves no one.

Never reported: a full local connection pool, a client that went away, the gateway's own
request deadline or shutdown, a missing key, a provider 4xx (the request is at fault).

States: CLOSED → OPEN when the window (``window_s``, in ten buckets) holds at least
``min_requests`` counted outcomes and at least ``failure_rate`` of them are failures (the
resilience4j/Hystrix rule); OPEN skips the model for ``reset_timeout_s``; then HALF-OPEN lets
one trial request through at a time, ``success_threshold`` successes close it (with a fresh
window), a failure re-opens it, an unattributed or missing outcome just ends the trial.

Everything here is plain in-memory state touched only from the event loop: no locks and no
I/O on the request path. Sharing open breakers between replicas is ``gateway.breaker_sync``'s
job, in the background. (pybreaker was the state machine before: it counts consecutive
failures, has no rate window, and its Redis storage is synchronous; it is no longer used.)
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from gateway.config import BreakerConfig, ModelConfig

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
_BUCKETS = 10
_MAX_FINGERPRINTS = 1024


class Outcome(enum.Enum):
    """What one request's try at one model says about the model (see the module docstring)."""

    SUCCESS = "success"
    FAILURE = "failure"
    UNATTRIBUTED = "unattributed"
    #: Failed on every model it tried, one of which serves others: the request's fault (ignored).
    POISON = "poison"


@dataclass
class _Bucket:
    start: float
    successes: int = 0
    failures: int = 0
    #: Fingerprints of unattributed failures (at most ``min_requests`` kept: enough to decide).
    unattributed: set[str] = field(default_factory=set)
    #: Fingerprints of counted failures, and of requests served after one (at most ``_MAX_FINGERPRINTS`` each).
    failed: set[str] = field(default_factory=set)
    served: set[str] = field(default_factory=set)


StateListener = Callable[["Breaker", str, str], None]


class Breaker:
    """One deployment's breaker. ``allow()`` before a call; one ``record()`` or ``release()`` after."""

    def __init__(
        self,
        name: str,
        models: tuple[str, ...],
        cfg: BreakerConfig,
        on_change: StateListener,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        #: The configured model names this breaker guards (several when they share a deployment).
        self.models = models
        self._cfg = cfg
        self._on_change = on_change
        self._clock = clock
        self._state = CLOSED
        self._window: deque[_Bucket] = deque()
        self._open_until = 0.0
        self._trial_until = 0.0
        self._trial_successes = 0
        #: Why it last opened (for the log and /readyz).
        self.reason = ""

    # ------------------------------------------------------------------ reading

    @property
    def state(self) -> str:
        """'closed', 'open' or 'half-open' (an open breaker whose time is up reads half-open)."""
        if self._state == OPEN and self._clock() >= self._open_until:
            return HALF_OPEN
        return self._state

    @property
    def open_remaining_s(self) -> float:
        """Seconds until an open breaker lets a trial through (0 unless open)."""
        return max(0.0, self._open_until - self._clock()) if self._state == OPEN else 0.0

    def serving(self) -> bool:
        """Has the model served a request in the current window?"""
        self._expire(self._clock())
        return any(b.successes for b in self._window)

    def counts(self) -> tuple[int, int]:
        """(counted failures, counted outcomes) in the current window."""
        self._expire(self._clock())
        successes = sum(b.successes for b in self._window)
        failures = sum(b.failures for b in self._window)
        if successes == 0:
            failures += len(set().union(*(b.unattributed for b in self._window)))
        return failures, successes + failures

    # ------------------------------------------------------------------ the request path

    def allow(self, *, probe: bool = False) -> bool:
        """May a request try this model now? In half-open, True hands out the one trial.

        ``probe``: every model of a request's chain is open (see ``gateway.resilience``): let this
        request through as a trial even while open, so that breakers never refuse every model.
        """
        now = self._clock()
        if self._state == CLOSED:
            return True
        if self._state == OPEN:
            if now < self._open_until and not probe:
                return False
            self._set(HALF_OPEN)
            self._trial_successes = 0
        elif now < self._trial_until and not probe:
            return False  # half-open, and another request's trial is in flight
        # a trial whose outcome never comes (it cannot happen, but a lease never blocks forever)
        self._trial_until = now + self._cfg.reset_timeout_s
        return True

    def remembers_failures(self) -> bool:
        """Does the window hold fingerprints of failed requests (then a success should name its request)?"""
        return any(b.failed for b in self._window)

    def record(self, outcome: Outcome, fingerprint: str = "") -> None:
        """One request's outcome on this model. ``fingerprint`` identifies the request: always for
        failures; for a success, only when :meth:`remembers_failures` (it is not free to compute)."""
        now = self._clock()
        if outcome is Outcome.POISON:
            self.release()
            return
        if self._state == HALF_OPEN:
            self._trial_until = 0.0
            if outcome is Outcome.SUCCESS:
                self._trial_successes += 1
                if self._trial_successes >= self._cfg.success_threshold:
                    self._window.clear()
                    self._set(CLOSED)
            elif outcome is Outcome.FAILURE:
                self._open(now, "a trial request failed")
            return
        if self._state == OPEN:
            return  # a request that started before the breaker opened: no news
        bucket = self._bucket(now)
        if outcome is Outcome.SUCCESS:
            bucket.successes += 1
            if fingerprint and len(bucket.served) < _MAX_FINGERPRINTS:
                bucket.served.add(fingerprint)
            return
        if outcome is Outcome.FAILURE:
            if fingerprint and self._only_failed(fingerprint) and self.serving():
                return  # a request this model only ever failed, failing again while it serves others: counted once
            bucket.failures += 1
            if fingerprint and len(bucket.failed) < _MAX_FINGERPRINTS:
                bucket.failed.add(fingerprint)
        elif len(bucket.unattributed) < self._cfg.min_requests:
            bucket.unattributed.add(fingerprint)
        failures, total = self.counts()
        if total >= self._cfg.min_requests and failures >= self._cfg.failure_rate * total:
            self._open(now, f"{failures} of the last {total} requests failed")

    def release(self) -> None:
        """The request ends without an outcome for this model (cancelled, saturated, rejected, ...)."""
        self._trial_until = 0.0

    # ------------------------------------------------------------------ shared state

    def adopt_open(self, remaining_s: float) -> None:
        """Another replica opened this breaker for ``remaining_s`` more seconds."""
        until = self._clock() + remaining_s
        if self._state == OPEN and until <= self._open_until:
            return
        self._open_until = until
        self._trial_until = 0.0
        self.reason = "opened by another gateway replica"
        if self._state != OPEN:
            self._set(OPEN, shared=True)

    # ------------------------------------------------------------------ internals

    def _open(self, now: float, reason: str) -> None:
        self._open_until = now + self._cfg.reset_timeout_s
        self._trial_until = 0.0
        self.reason = reason
        self._set(OPEN)

    def _set(self, state: str, *, shared: bool = False) -> None:
        old, self._state = self._state, state
        if state == OPEN:
            log.warning(
                "breaker %s (%s) open for %.0fs: %s; requests fall back",
                self.name,
                ", ".join(self.models),
                self._open_until - self._clock(),
                self.reason,
            )
        else:
            log.info("breaker %s (%s): %s -> %s", self.name, ", ".join(self.models), old, state)
        self._on_change(self, state, "remote" if shared else "local")

    def _only_failed(self, fingerprint: str) -> bool:
        """Has the request failed on this model in the window, and never been served by it?"""
        failed = any(fingerprint in b.failed for b in self._window)
        return failed and not any(fingerprint in b.served for b in self._window)

    def _expire(self, now: float) -> None:
        horizon = now - self._cfg.window_s
        while self._window and self._window[0].start <= horizon:
            self._window.popleft()

    def _bucket(self, now: float) -> _Bucket:
        self._expire(now)
        width = self._cfg.window_s / _BUCKETS
        if not self._window or now >= self._window[-1].start + width:
            self._window.append(_Bucket(now))
        return self._window[-1]


def deployment(cfg: ModelConfig) -> tuple[str, str, str]:
    """What fails together: one model of one provider at one address."""
    return cfg.provider, cfg.base_url, cfg.provider_model


class BreakerRegistry:
    """One :class:`Breaker` per deployment; configured models that share a deployment share it."""

    def __init__(self, models: Mapping[str, ModelConfig], cfg: BreakerConfig, on_change: StateListener) -> None:
        groups: dict[tuple[str, str, str], list[str]] = {}
        for name, model in models.items():
            groups.setdefault(deployment(model), []).append(name)
        self._by_model: dict[str, Breaker] = {}
        self.breakers: list[Breaker] = []
        for names in groups.values():
            breaker = Breaker(names[0], tuple(names), cfg, on_change)
            self.breakers.append(breaker)
            for name in names:
                self._by_model[name] = breaker

    def __getitem__(self, model: str) -> Breaker:
        return self._by_model[model]

    def states(self) -> dict[str, str]:
        """Each configured model's breaker state."""
        return {name: b.state for name, b in self._by_model.items()}
