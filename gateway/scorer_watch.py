"""No silent fallback: every request routed without a score is logged and counted; a high share warns.

When the scorer does not answer within ``scorer.deadline_ms`` (or is down, overloaded, still
loading), the policy serves the request from its scorer-down tier (``gateway.policy``). That is
the right thing for the request and an expensive one for the bill, so it must never go unseen:

- ``FallbackWatch.fallback`` logs one INFO line per such request (router, reason, time spent,
  prompt length; never the prompt) and counts it in ``ferryman_gateway_scorer_fallbacks{router,
  reason}``;
- the share of routed requests that fell back over the last ``fallback_window_s`` is the gauge
  ``ferryman_gateway_scorer_fallback_share``, and when it reaches ``fallback_warn_share`` (with
  at least ``MIN_REQUESTS`` routed in the window) a WARNING says so, at most once per window.

``self_check`` (started by ``gateway.service.Gateway``) times a few Score calls of a prompt past
every window once the scorer answers, and warns when a long prompt would miss the deadline on
this deployment: it measures what the gateway sees (network included), against the gateway's own
deadline, which is why it lives here and not in the scorer.

``VersionWatch`` announces a router's new artifact version once, whichever scorer replica answers.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import statistics
import time
from collections.abc import Callable, Iterable

from gateway.config import GatewayConfig, ScorerClientConfig
from gateway.metrics import Metrics
from gateway.scorer_client import ScorerClient, ScorerRejectedError, ScorerUnavailableError

log = logging.getLogger(__name__)

MIN_REQUESTS = 20  # routed requests in the window before a share is worth a warning
# ~4,000 characters of plain prose: past a 512-token window, so every router runs a full window.
LONG_PROMPT = " ".join(
    ["Summarise the following report, list its three main risks and propose a mitigation for each."] * 45
)
SELF_CHECK_CALLS = 3


class FallbackWatch:
    """Logs and counts each request routed without a score; tracks and warns about their share."""

    def __init__(self, cfg: ScorerClientConfig, metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> None:
        self._cfg = cfg
        self._metrics = metrics
        self._clock = clock
        self._events: collections.deque[tuple[float, bool]] = collections.deque()  # (time, fell back)
        self._fallbacks_in_window = 0
        self._last_warning = -float("inf")
        metrics.scorer_fallback_share.set_function(self.share)

    def _trim(self, now: float) -> None:
        horizon = now - self._cfg.fallback_window_s
        while self._events and self._events[0][0] < horizon:
            _, fell_back = self._events.popleft()
            self._fallbacks_in_window -= fell_back

    def share(self) -> float:
        """Share of routed requests in the window that fell back (0 when none were routed)."""
        self._trim(self._clock())
        return self._fallbacks_in_window / len(self._events) if self._events else 0.0

    def scored(self) -> None:
        """A routed request got its score."""
        self._record(False)

    def fallback(self, router: str, reason: str, waited_ms: float, prompt_chars: int) -> None:
        """A routed request went to its scorer-down tier: log it, count it, maybe warn about the share."""
        self._metrics.scorer_fallbacks.labels(router, reason).inc()
        log.info(
            "routed without a score (scorer-down tier): router=%s reason=%s waited_ms=%.1f prompt_chars=%d",
            router,
            reason,
            waited_ms,
            prompt_chars,
        )
        self._record(True)

    def _record(self, fell_back: bool) -> None:
        now = self._clock()
        self._events.append((now, fell_back))
        self._fallbacks_in_window += fell_back
        self._trim(now)
        if not fell_back:
            return
        window = self._cfg.fallback_window_s
        share = self._fallbacks_in_window / len(self._events)
        due = now - self._last_warning >= window
        if due and len(self._events) >= MIN_REQUESTS and share >= self._cfg.fallback_warn_share:
            self._last_warning = now
            log.warning(
                "%.0f %% of routed requests (%d of %d) in the last %.0f s were sent to the scorer-down tier "
                "without a score (scorer.deadline_ms %.0f); see ferryman_gateway_scorer_fallbacks by reason "
                "and docs/scorer.md for sizing the deadline",
                100 * share,
                self._fallbacks_in_window,
                len(self._events),
                window,
                self._cfg.deadline_ms,
            )


class VersionWatch:
    """Says once that a router scores with a new artifact version, however many scorer replicas answer.

    The gateway meets a new version in a Score answer and refetches the tables (``gateway.policy``); with
    several replicas, ListRouters may be answered by one still serving the old version, and the next Score
    from the new one would announce the same change again. The first Score of a version says it is new; a
    Score of it after a refetch that did not bring its table says, once, that the replicas serve different
    versions (a rollout under way, or a replica that did not reload)."""

    #: Versions remembered per router (the older are forgotten; one coming back is announced again).
    KEPT = 8

    def __init__(self) -> None:
        self._seen: dict[str, collections.OrderedDict[str, int]] = {}  # router -> version -> refetches asked

    def refetching(self, router: str, version: str, tables_for: str) -> None:
        """A Score of ``router`` came from ``version``, whose table is not fetched (the last is ``tables_for``)."""
        seen = self._seen.setdefault(router, collections.OrderedDict())
        asked = seen.get(version, 0)
        seen[version] = asked + 1
        seen.move_to_end(version)
        while len(seen) > self.KEPT:
            seen.popitem(last=False)
        if asked == 0:
            log.info("router %s now scores with %s (tables are for %s): refreshing", router, version, tables_for)
        elif asked == 1:
            log.info(
                "router %s: scorer replicas serve different versions (%s scores, ListRouters answered with %s: a "
                "rollout under way, or a replica that did not reload); %s's table is fetched when a replica "
                "serving it answers ListRouters (logged once)",
                router,
                version,
                tables_for,
                version,
            )


def routers_in_use(config: GatewayConfig) -> list[str]:
    """The scorer routers in use: the default router, then every policy's (a causal-LLM router's
    fallback in its place), without repeats."""
    names = [config.routing.default_router, *(p.router for p in config.policies.values())]
    llm = config.llm_routers
    return list(dict.fromkeys(llm[n].fallback_router if n in llm else n for n in names))


def where_named(config: GatewayConfig, router: str) -> list[str]:
    """The configuration fields that make ``router`` (a scorer router) one of ``routers_in_use``."""
    llm = config.llm_routers
    fields = [("routing.default_router", config.routing.default_router)]
    fields += [(f"policies.{name}.router", p.router) for name, p in config.policies.items()]
    out = []
    for field, named in fields:
        if named == router:
            out.append(field)
        elif named in llm and llm[named].fallback_router == router:
            out.append(f"llm_routers.{named}.fallback_router (via {field})")
    return out


async def self_check(
    client: ScorerClient, routers: Iterable[str], cfg: ScorerClientConfig, *, retry_for_s: float = 300.0
) -> dict[str, float]:
    """Median time (ms) of a full-window Score per router, once the scorer answers; warns past the deadline.

    Waits for the scorer (it may still be loading when the gateway starts) for up to ``retry_for_s``.
    A router the scorer does not have is skipped (requests naming it get a clear error anyway).
    """
    timeout_s = max(5.0, 10 * cfg.deadline_ms / 1000)
    give_up = time.monotonic() + retry_for_s
    out: dict[str, float] = {}
    for router in dict.fromkeys(routers):
        times: list[float] = []
        while len(times) < SELF_CHECK_CALLS + 1:  # the first call may pay connection set-up: not counted
            try:
                started = time.perf_counter()
                await client.score_text(router, LONG_PROMPT, "", "", timeout_s=timeout_s)
                times.append((time.perf_counter() - started) * 1000)
            except ScorerRejectedError as exc:
                log.warning("scorer self-check: router %s: %s", router, exc)
                break
            except ScorerUnavailableError:
                if time.monotonic() > give_up:
                    log.warning("scorer self-check: no answer from the scorer for %.0f s; not checked", retry_for_s)
                    return out
                await asyncio.sleep(1.0)
        if len(times) <= 1:
            continue
        ms = statistics.median(times[1:])
        out[router] = ms
        deadline = cfg.deadline_ms
        if ms > deadline:
            log.warning(
                "scorer self-check: a full-window Score with router %s takes %.0f ms here, over scorer.deadline_ms "
                "%.0f: every prompt past the window will be routed to the scorer-down tier. Raise scorer.deadline_ms "
                "or give the scorer more cores (docs/scorer.md)",
                router,
                ms,
                deadline,
            )
        elif ms > 0.5 * deadline:
            log.warning(
                "scorer self-check: a full-window Score with router %s takes %.0f ms alone, more than half of "
                "scorer.deadline_ms %.0f: under load long prompts may miss it (docs/scorer.md)",
                router,
                ms,
                deadline,
            )
        else:
            log.info(
                "scorer self-check: a full-window Score with router %s takes %.0f ms (deadline %.0f ms)",
                router,
                ms,
                deadline,
            )
    return out
