"""The ``learning:`` section of the gateway configuration (frozen dataclasses, validated at start).

Everything is off unless ``learning.policies`` names at least one policy *and* shadow sampling
(``shadow.sample_rate`` > 0) or explicit feedback (``feedback.enabled``) is turned on. Turning
it on is the operator's decision to store prompts and answers of those policies' requests (see
the privacy section of ``docs/learning.md``). Parsed by :func:`parse_learning`, called from
``gateway.config.parse_config`` with the section's reader.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from gateway.errors import ConfigError
from gateway.learning.tenants import is_tenant_id

if TYPE_CHECKING:
    from gateway.config import ModelConfig, PolicyConfig, _Reader

OnInconsistent = Literal["tie", "discard"]


@dataclass(frozen=True)
class StoreConfig:
    """Where comparisons and ratings are kept: a SQLite file (one replica) or Redis (several)."""

    #: ``sqlite://PATH`` or a bare file path (``sqlite:///var/lib/x.db`` is the absolute /var/lib/x.db),
    #: or ``redis://[:password@]host:port/db`` (``rediss://`` for TLS). Empty: ``url_env`` must be set.
    url: str = "sqlite://ferryman-learning.db"
    #: An environment variable holding the URL (wins over ``url`` when set: a Redis password stays out of the file).
    #: Given without ``url``, the variable is required: the gateway never falls back to a local default file.
    url_env: str | None = None
    #: Records older than this are deleted.
    retention_days: float = 30.0
    #: The oldest records beyond this many are deleted.
    max_records: int = 100_000
    #: Each stored text (a prompt turn, an answer) is cut to this many characters.
    max_text_chars: int = 32_000
    #: Every store operation gives up after this long (the store is then "down" for ``retry_s``).
    timeout_s: float = 2.0
    retry_s: float = 5.0
    #: How often retention and the size cap are applied (the cap also after ``prune_after_puts`` new records).
    prune_interval_s: float = 60.0
    #: Key prefix in Redis.
    namespace: str = "ferryman"
    #: Writes waiting for the store beyond this many are dropped (and counted).
    max_pending_writes: int = 1000

    @property
    def prune_after_puts(self) -> int:
        """New records written since the last prune that start the next one at once (1 % of ``max_records``, at
        least 1): between prunes, each replica's worker adds at most this many beyond the cap, plus what it
        writes while the prune runs."""
        return max(1, self.max_records // 100)

    def resolve_url(self, environ: Mapping[str, str]) -> str:
        """The store's URL: ``url_env``'s variable when set, else ``url``; a ConfigError when neither is."""
        value = environ.get(self.url_env, "").strip() if self.url_env else ""
        if not value:
            if not self.url:
                raise ConfigError(
                    f"learning.store.url_env: ${self.url_env} is not set, and there is no learning.store.url "
                    "to fall back on"
                )
            return self.url
        try:
            store_target(value)
        except ConfigError as exc:
            raise ConfigError(f"learning.store.url_env: ${self.url_env}: {exc}") from None
        return value


@dataclass(frozen=True)
class RedactRule:
    """Replace every match of ``pattern`` by ``replace`` (Python ``re`` syntax, ``\\1`` allowed)."""

    pattern: re.Pattern[str]
    replace: str = "[redacted]"


@dataclass(frozen=True)
class RedactConfig:
    """Applied to every text before it is stored: the rules, then the callable (``module:function``)."""

    rules: tuple[RedactRule, ...] = ()
    callable: str = ""


@dataclass(frozen=True)
class ShadowConfig:
    """Asking the other tier's model too, for a sample of requests, after the client has its answer."""

    #: Share of the learning policies' answered requests that are shadowed (0 = none).
    sample_rate: float = 0.0
    #: Shadow and judge spend per UTC day, in US dollars; no new shadow starts once it is reached.
    daily_budget_usd: float = 0.0
    #: Shadow jobs (other model + judge) the learning worker runs at once.
    max_concurrent: int = 16
    #: Admitted shadow jobs that may wait, beyond the ``max_concurrent`` running, for a running one to end
    #: (0: none wait). A sample beyond both is dropped and counted (``saturated``); each waiting job holds its
    #: request and answer (memory) and its budget reservation. 48 (with ``worker_sched_idle``): docs/lab-log.md,
    #: 2026-12-05 17:00 rule and 18:02 runs.
    max_queued: int = 48
    #: A shadow call (and each judge call) is abandoned after this long.
    timeout_s: float = 60.0
    #: Tenants (``ferryman learn tenant-id``) whose requests are never shadowed nor recorded.
    opt_out_tenants: frozenset[str] = frozenset()

    @property
    def max_admitted(self) -> int:
        """Shadow jobs admitted and not done, running or waiting: what bounds their memory and reservations."""
        return self.max_concurrent + self.max_queued


@dataclass(frozen=True)
class JudgeConfig:
    """The model that compares the two answers (any configured model; a keyless local one is fine)."""

    model: str = ""
    max_tokens: int = 1024
    #: When the two orders disagree: call it a tie (MT-Bench's rule) or discard the comparison.
    on_inconsistent: OnInconsistent = "tie"


@dataclass(frozen=True)
class FeedbackConfig:
    """``POST /v1/feedback`` and ``SubmitFeedback``: applications rate answers by response id."""

    #: Record every answer of the learning policies (not only shadowed ones) so that it can be rated.
    enabled: bool = False


@dataclass(frozen=True)
class LearningConfig:
    """The whole ``learning:`` section."""

    #: Named policies whose traffic is learned from (opt-in per policy); empty = off.
    policies: tuple[str, ...] = ()
    store: StoreConfig = field(default_factory=StoreConfig)
    redact: RedactConfig = field(default_factory=RedactConfig)
    shadow: ShadowConfig = field(default_factory=ShadowConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    #: Judged comparisons per policy behind the live quality gauges (per replica).
    metrics_window: int = 1000
    #: Niceness steps the learning worker process runs below the gateway's (0-19; niceness caps at 19, and a
    #: worker that gets fewer steps logs it): its CPU comes after the serving process's.
    worker_nice: int = 10
    #: Run the worker under SCHED_IDLE (Linux): it gets only CPU no other process wants, so a client's
    #: latency is untouched even on a saturated host; its jobs wait (``shadow.max_queued``) and, on a host
    #: that never idles, are shed (counted as saturated).
    worker_sched_idle: bool = True

    @property
    def enabled(self) -> bool:
        return bool(self.policies) and (self.shadow.sample_rate > 0 or self.feedback.enabled)


def store_target(url: str) -> tuple[Literal["redis", "sqlite"], str]:
    """``("redis", url)`` or ``("sqlite", file path)`` for a store URL; a ConfigError says what is accepted."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return "redis", url
    if "://" in url and not url.startswith("sqlite://"):
        raise ConfigError(f"unknown scheme {url.split('://', 1)[0]!r}; use sqlite://PATH, a file path, or redis://")
    path = url.removeprefix("sqlite://")
    if not path:
        raise ConfigError("sqlite:// needs a file path, e.g. sqlite://learning.db")
    return "sqlite", path


def _store(r: _Reader) -> StoreConfig:
    d = StoreConfig
    url_env = r.get("url_env", str)
    url = r.get("url", str, "" if url_env else d.url)
    if url or not url_env:  # with url_env alone, the variable's URL is checked at start (resolve_url)
        try:
            store_target(url)
        except ConfigError as exc:
            raise ConfigError(f"{r._p('url')}: {exc}") from None
    cfg = StoreConfig(
        url=url,
        url_env=url_env,
        retention_days=r.positive("retention_days", float, d.retention_days),
        max_records=r.positive("max_records", int, d.max_records),
        max_text_chars=r.positive("max_text_chars", int, d.max_text_chars),
        timeout_s=r.positive("timeout_s", float, d.timeout_s),
        retry_s=r.positive("retry_s", float, d.retry_s),
        prune_interval_s=r.positive("prune_interval_s", float, d.prune_interval_s),
        namespace=r.get("namespace", str, d.namespace),
        max_pending_writes=r.positive("max_pending_writes", int, d.max_pending_writes),
    )
    r.finish()
    return cfg


def _redact(r: _Reader) -> RedactConfig:
    rules_raw = r.raw("rules") or []
    if not isinstance(rules_raw, list):
        raise ConfigError("learning.redact.rules: expected a list of {pattern, replace}")
    rules = []
    for i, item in enumerate(rules_raw):
        rr = type(r)(item, f"learning.redact.rules[{i}]")
        pattern = rr.get("pattern", str, required=True)
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"learning.redact.rules[{i}].pattern: not a valid regular expression: {exc}") from None
        rules.append(RedactRule(compiled, rr.get("replace", str, "[redacted]")))
        rr.finish()
    target = r.get("callable", str, "")
    if target and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", target):
        raise ConfigError(f"learning.redact.callable: expected 'package.module:function', got {target!r}")
    r.finish()
    return RedactConfig(tuple(rules), target)


def _shadow(r: _Reader) -> ShadowConfig:
    d = ShadowConfig
    opt_out = r.raw("opt_out_tenants") or []
    if not isinstance(opt_out, list) or not all(isinstance(t, str) and t for t in opt_out):
        raise ConfigError("learning.shadow.opt_out_tenants: expected a list of tenant ids (ferryman learn tenant-id)")
    for i, entry in enumerate(opt_out):
        # was accepted as it was: a client key listed here opted nobody out, and that tenant's prompts were stored
        if not is_tenant_id(entry.strip()):
            raise ConfigError(
                f"learning.shadow.opt_out_tenants[{i}]: not a tenant id ('t-' and 16 hex digits, or 'anonymous'); a "
                "client key's tenant id is printed by `printf '%s\\n' \"$KEY\" | ferryman learn tenant-id` (the "
                "entry is not repeated here: it may be a key)"
            )
    cfg = ShadowConfig(
        sample_rate=r.unit("sample_rate") or 0.0,
        daily_budget_usd=r.non_negative("daily_budget_usd", float, d.daily_budget_usd),
        max_concurrent=r.positive("max_concurrent", int, d.max_concurrent),
        max_queued=r.non_negative("max_queued", int, d.max_queued),
        timeout_s=r.positive("timeout_s", float, d.timeout_s),
        opt_out_tenants=frozenset(t.strip() for t in opt_out),
    )
    r.finish()
    return cfg


def _judge(r: _Reader) -> JudgeConfig:
    on_inconsistent = r.get("on_inconsistent", str, "tie")
    if on_inconsistent not in ("tie", "discard"):
        raise ConfigError(f"learning.judge.on_inconsistent: must be 'tie' or 'discard', got {on_inconsistent!r}")
    cfg = JudgeConfig(
        model=r.get("model", str, ""),
        max_tokens=r.positive("max_tokens", int, JudgeConfig.max_tokens),
        on_inconsistent=on_inconsistent,  # type: ignore[arg-type]
    )
    r.finish()
    return cfg


def parse_learning(
    r: _Reader, models: Mapping[str, ModelConfig], policies: Mapping[str, PolicyConfig]
) -> LearningConfig:
    """Validate the ``learning:`` section against the models and policies already parsed."""
    reader = type(r)  # gateway.config's reader class (imported from there only for type checking: no cycle)
    names = r.raw("policies") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError("learning.policies: expected a list of policy names")
    for name in names:
        if name not in policies:
            raise ConfigError(f"learning.policies: {name!r} is not defined under policies")
    store = _store(reader(r.raw("store"), "learning.store"))
    redact = _redact(reader(r.raw("redact"), "learning.redact"))
    shadow = _shadow(reader(r.raw("shadow"), "learning.shadow"))
    judge = _judge(reader(r.raw("judge"), "learning.judge"))
    fr = reader(r.raw("feedback"), "learning.feedback")
    feedback = FeedbackConfig(enabled=fr.get("enabled", bool, False))
    fr.finish()
    cfg = LearningConfig(
        policies=tuple(dict.fromkeys(names)),
        store=store,
        redact=redact,
        shadow=shadow,
        judge=judge,
        feedback=feedback,
        metrics_window=r.positive("metrics_window", int, LearningConfig.metrics_window),
        worker_nice=r.non_negative("worker_nice", int, LearningConfig.worker_nice),
        worker_sched_idle=r.get("worker_sched_idle", bool, LearningConfig.worker_sched_idle),
    )
    r.finish()
    if cfg.worker_nice > 19:
        raise ConfigError(f"learning.worker_nice: must be in 0..19, got {cfg.worker_nice}")
    if shadow.sample_rate > 0:
        if not judge.model:
            raise ConfigError("learning.judge.model: required when learning.shadow.sample_rate > 0")
        if judge.model not in models:
            raise ConfigError(f"learning.judge.model: {judge.model!r} is not defined under models")
        if shadow.daily_budget_usd <= 0:
            raise ConfigError("learning.shadow.daily_budget_usd: required (> 0) when learning.shadow.sample_rate > 0")
    return cfg


def describe(cfg: LearningConfig) -> dict[str, Any]:
    """A secret-free summary for the start-up log line."""
    return {
        "policies": list(cfg.policies),
        "shadow_rate": cfg.shadow.sample_rate,
        "daily_budget_usd": cfg.shadow.daily_budget_usd,
        "shadow_max_concurrent": cfg.shadow.max_concurrent,
        "shadow_max_queued": cfg.shadow.max_queued,
        "judge": cfg.judge.model,
        "feedback": cfg.feedback.enabled,
        "retention_days": cfg.store.retention_days,
        "max_records": cfg.store.max_records,
        "redaction": bool(cfg.redact.rules or cfg.redact.callable),
        # how the learning worker gives way to serving (docs/learning.md, "The learning worker")
        "worker_nice": cfg.worker_nice,
        "worker_sched_idle": cfg.worker_sched_idle,
    }
