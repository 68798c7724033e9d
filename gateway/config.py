"""Gateway configuration: one YAML file, validated at start into typed, frozen dataclasses.

Every error names the offending field by its path (``models.gpt-4o.price_in_per_mtok``) so
that a bad file fails fast with a clear message. Secrets are never read from the file
itself: provider keys and client API keys come from environment variables or mounted files,
and are resolved when needed (``resolve_secret``) so that ``Route`` works with no provider
keys at all. See ``config/gateway.yaml`` for a commented example.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from ferryman import keepalive
from ferryman.ports import MAX_PORT, grpc_target
from gateway.calibration_online import CalibrationConfig, parse_calibration
from gateway.errors import ConfigError
from gateway.learning.config import LearningConfig, parse_learning
from gateway.policy_config import PolicyConfig, parse_policies, rule_field, tier_field
from gateway.routers.llm_config import LLMRouterConfig, parse_llm_routers
from gateway.sticky import StickyConfig, parse_sticky
from gateway.tiers import RuleKind, TierConfig, TierRule, Tiers, parse_tiers, relative_costs

__all__ = ["GatewayConfig", "PolicyConfig", "TierConfig", "TierName", "Tiers", "load_config", "parse_config"]

ProviderKind = Literal["openai", "anthropic"]
#: A configured tier's name ("strong" / "weak" in the two-tier form).
TierName = str

T = TypeVar("T")


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives: an environment variable and/or a mounted file (the file wins)."""

    env: str | None = None
    file: Path | None = None

    def describe(self) -> str:
        """Human-readable location, for error messages (never the value)."""
        parts = [f"environment variable {self.env}"] if self.env else []
        if self.file:
            parts.append(f"file {self.file}")
        return " or ".join(parts) or "nowhere (no api_key_env / api_key_file configured)"


def resolve_secret(ref: SecretRef, environ: Mapping[str, str] | None = None) -> str | None:
    """The secret's value, or None when neither the file nor the variable provides one."""
    env = os.environ if environ is None else environ
    if ref.file is not None and ref.file.is_file():
        value = ref.file.read_text(encoding="utf-8").strip()
        if value:
            return value
    if ref.env:
        value = env.get(ref.env, "").strip()
        if value:
            return value
    return None


@dataclass(frozen=True)
class ModelConfig:
    """One provider model the gateway can call."""

    name: str
    provider: ProviderKind
    base_url: str
    provider_model: str
    api_key: SecretRef
    price_in_per_mtok: float
    price_out_per_mtok: float
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    max_connections: int = 100
    #: How long a request waits for a free connection of ``max_connections`` before it moves on
    #: to the next model (local saturation: never counted against the provider's breaker).
    pool_timeout_s: float = 10.0
    #: Anthropic requires max_tokens; used when the request sets none.
    default_max_tokens: int = 1024
    #: The largest max_tokens a request may ask of this model (None: only ``limits.max_tokens``).
    max_tokens_cap: int | None = None
    #: Request features this model honours (None: all its provider kind can: ``gateway.capabilities``).
    features: frozenset[str] | None = None


@dataclass(frozen=True)
class ScorerClientConfig:
    """How the gateway reaches the scorer."""

    target: str = "dns:///127.0.0.1:50051"
    #: A Score slower than this routes the request to the policy's scorer-down tier. 250 ms: the
    #: p99 of a full-window Score (prompts past 128 tokens) as the gateway saw it at 10 requests/s
    #: on the shared 2-vCPU development VM was 97-149 ms over three runs (`ferryman bench steady`),
    #: plus headroom for load spikes and heavy callers; docs/scorer.md gives values per core count.
    deadline_ms: float = 250.0
    list_routers_deadline_ms: float = 2000.0
    #: Share of routed requests sent to the scorer-down tier (over the window) that logs a WARNING.
    fallback_warn_share: float = 0.05
    fallback_window_s: float = 60.0
    #: At start, time a full-window Score per router in use and warn if it misses ``deadline_ms``.
    self_check: bool = True
    calibration_refresh_s: float = 60.0
    keepalive_time_ms: int = 30_000
    keepalive_timeout_ms: int = 10_000


@dataclass(frozen=True)
class RetryConfig:
    """Retries on transient errors (429, 5xx, connect errors, timeouts) against one model."""

    max_retries: int = 2
    base_delay_s: float = 0.2
    max_delay_s: float = 2.0
    #: A Retry-After longer than this is not waited for; the next model is tried instead.
    max_retry_after_s: float = 10.0
    #: Retry a model that sent nothing for its ``read_timeout_s`` (a hung model). Off: the next model is
    #: tried at once, so a hung model costs a request one read timeout, not ``max_retries + 1`` of them.
    retry_read_timeouts: bool = False


@dataclass(frozen=True)
class BreakerConfig:
    """One circuit breaker per provider deployment (see ``gateway.breakers``); shared through Redis."""

    #: Open when at least this share of the requests in the window failed on the model ...
    failure_rate: float = 0.5
    #: ... and the window holds at least this many request outcomes.
    min_requests: int = 10
    #: The sliding window of request outcomes, in seconds.
    window_s: float = 30.0
    #: How long an open breaker skips the model before it lets trial requests through.
    reset_timeout_s: float = 30.0
    #: Successful trial requests (one at a time) that close a half-open breaker.
    success_threshold: int = 1
    redis_url_env: str = "REDIS_URL"
    redis_namespace: str = "ferryman"
    #: After a Redis error, local state is used for this long before Redis is tried again.
    redis_retry_s: float = 5.0
    redis_socket_timeout_s: float = 0.5
    #: How often open breakers are exchanged with Redis (in a background task, never per request).
    redis_sync_s: float = 0.5


@dataclass(frozen=True)
class RoutingConfig:
    """Defaults for routed requests."""

    default_router: str = "mf"
    #: After the chosen tier's chain is exhausted, try the other tiers' chains (more capable ones first).
    fallback_to_other_tier: bool = True
    #: A tier name ("strong" / "weak": the top / cheapest tier).
    scorer_down_tier: TierName = "strong"
    #: How a threshold picks one of more than two tiers: cost_aware or cheapest (``gateway.tiers``).
    tier_rule: RuleKind = "cost_aware"


@dataclass(frozen=True)
class ServerConfig:
    """Listening addresses, request deadlines and shutdown (see ``gateway.lifecycle``)."""

    grpc_host: str = "0.0.0.0"
    grpc_port: int = 50061
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    #: The whole request, retries, fallbacks and a stream's last chunk included.
    request_timeout_s: float = 300.0
    #: A started stream whose provider sends nothing for this long ends with an error event.
    stream_idle_timeout_s: float = 30.0
    log_prompts: bool = False
    # On SIGTERM: how long in-flight requests (a long completion included) may take to finish.
    drain_s: float = 20.0
    #: A gRPC client connection is closed (GOAWAY; its calls under way get request_timeout_s to finish)
    #: after this long, so a client that keeps one connection reconnects and the Service spreads it
    #: over the replicas, those added since included. 0: never.
    grpc_max_connection_age_s: float = 60.0


@dataclass(frozen=True)
class LimitsConfig:
    """Bounds on what clients may send and providers may answer (see ``gateway.validation``)."""

    #: Request body (HTTP) and message (gRPC) size: larger ones get 413 / RESOURCE_EXHAUSTED.
    max_body_bytes: int = 1_048_576
    #: The request line and headers of one HTTP request together: larger ones get 431.
    max_header_bytes: int = 16_384
    max_header_count: int = 100
    #: A client must send its request line and headers within this long of connecting (or of
    #: starting the next request on a kept-alive connection), and its body within body_timeout_s
    #: of the headers; otherwise 408 and the connection is closed.
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    #: A client that reads nothing of its answer for this long loses the connection.
    write_timeout_s: float = 30.0
    max_messages: int = 2048
    max_stop: int = 4
    #: The largest max_tokens of any request (a model's ``max_tokens_cap`` may lower it).
    max_tokens: int = 131_072
    #: A provider answer (a whole body, or all of a stream) larger than this is a provider fault.
    max_response_bytes: int = 8_388_608
    #: Tools one request may offer, the size (as compact JSON) and nesting depth of one tool's
    #: parameters or response_format schema, and choices one request may ask (``n``).
    max_tools: int = 128
    max_schema_bytes: int = 65_536
    max_schema_depth: int = 32
    max_n: int = 8


@dataclass(frozen=True)
class AdminConfig:
    """The operators' listener: ``/metrics`` and ``/readyz`` (breaker states), apart from the API."""

    host: str = "0.0.0.0"
    port: int = 9091


@dataclass(frozen=True)
class AuthConfig:
    """Client API keys (bearer tokens); auth may be disabled only explicitly."""

    disabled: bool = False
    keys_env: str | None = "FERRYMAN_API_KEYS"
    keys_file: Path | None = None

    def load_keys(self, environ: Mapping[str, str] | None = None) -> frozenset[str]:
        """The configured client keys: comma- or newline-separated, from the file and/or variable.

        Lines of the file starting with ``#`` are comments. A key cannot hold whitespace (a sentence, a
        comment after a key): such an entry is an error naming where it is, never a key a client could send.
        """
        env = os.environ if environ is None else environ
        sources: list[tuple[str, str]] = []
        if self.keys_file is not None:
            if not self.keys_file.is_file():
                raise ConfigError(f"auth.keys_file: {self.keys_file} does not exist")
            text = self.keys_file.read_text(encoding="utf-8")
            lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
            sources.append((f"auth.keys_file ({self.keys_file})", "\n".join(lines)))
        if self.keys_env:
            sources.append((f"the client keys in ${self.keys_env}", env.get(self.keys_env, "")))
        keys: set[str] = set()
        for where, chunk in sources:
            for entry in (k.strip() for k in chunk.replace("\n", ",").split(",")):
                if any(c.isspace() for c in entry):
                    raise ConfigError(
                        f"{where}: an entry contains whitespace; keys are comma- or newline-separated "
                        "(a line starting with # is a comment)"
                    )
                if entry:
                    keys.add(entry)
        return frozenset(keys)


@dataclass(frozen=True)
class GatewayConfig:
    """The whole, validated gateway configuration."""

    models: Mapping[str, ModelConfig]
    tiers: Tiers
    policies: Mapping[str, PolicyConfig]
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    scorer: ScorerClientConfig = field(default_factory=ScorerClientConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    learning: LearningConfig = field(default_factory=LearningConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    sticky: StickyConfig = field(default_factory=StickyConfig)
    llm_routers: Mapping[str, LLMRouterConfig] = field(default_factory=dict)

    def tier_of(self, model: str) -> TierName | None:
        """The tier whose chain contains ``model``, if any."""
        return self.tiers.of_model(model)

    def tier_rule(self) -> TierRule:
        """How a threshold picks a tier (``routing.tier_rule`` over the tiers' prices)."""
        return TierRule.build(self.routing.tier_rule, relative_costs(self.tiers, self.models))


# ---------------------------------------------------------------- parsing helpers


class _Reader:
    """Reads typed values out of one mapping, naming the field path in every error."""

    def __init__(self, data: Any, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(data).__name__}")
        self.data = data
        self.path = path
        self._seen: set[str] = set()

    def _p(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str) -> Any:
        self._seen.add(key)
        return self.data.get(key)

    def get(self, key: str, kind: type[T], default: T | None = None, *, required: bool = False) -> T:
        value = self.raw(key)
        if value is None:
            if required:
                unknown = self.unknown()
                typo = f" (unknown field(s) here: {', '.join(unknown)})" if unknown else ""
                raise ConfigError(f"{self._p(key)}: required{typo}")
            return default  # type: ignore[return-value]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise ConfigError(f"{self._p(key)}: expected {kind.__name__}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{self._p(key)}: must be a finite number")
        return value

    def positive(self, key: str, kind: type[T], default: T) -> T:
        value = self.get(key, kind, default)
        if isinstance(value, int | float) and value <= 0:
            raise ConfigError(f"{self._p(key)}: must be > 0, got {value}")
        return value

    def non_negative(self, key: str, kind: type[T], default: T | None, *, required: bool = False) -> T:
        value = self.get(key, kind, default, required=required)
        if isinstance(value, int | float) and value < 0:
            raise ConfigError(f"{self._p(key)}: must be >= 0, got {value}")
        return value

    def grpc_duration(self, key: str, kind: type[T], default: T, *, ms: bool = False, zero: bool = False) -> T:
        """A duration (seconds, or milliseconds with ``ms``) that becomes a gRPC argument: > 0 (>= 0 with
        ``zero``) and within the C int of milliseconds gRPC carries, else the server fails to start."""
        value = self.non_negative(key, kind, default) if zero else self.positive(key, kind, default)
        assert isinstance(value, int | float)
        if value * (1 if ms else 1000) > keepalive.MAX_ARG_MS:
            most = keepalive.MAX_ARG_MS if ms else keepalive.MAX_ARG_MS // 1000
            raise ConfigError(f"{self._p(key)}: must be at most {most} (gRPC carries it as a C int of ms), got {value}")
        return value

    def port(self, key: str, default: int) -> int:
        value = self.non_negative(key, int, default)
        if value > MAX_PORT:
            raise ConfigError(f"{self._p(key)}: must be a port number (0 to {MAX_PORT}), got {value}")
        return value

    def unit(self, key: str, default: float | None = None) -> float | None:
        value = self.get(key, float, default)
        if value is not None and not 0.0 <= value <= 1.0:
            raise ConfigError(f"{self._p(key)}: must be in [0, 1], got {value}")
        return value

    def path_(self, key: str) -> Path | None:
        value = self.get(key, str)
        return Path(value) if value else None

    def moved(self, key: str, hint: str) -> None:
        """A field that no longer exists here: fail with where it went instead of 'unknown field'."""
        if key in self.data:
            raise ConfigError(f"{self._p(key)}: no longer supported; {hint}")
        self._seen.add(key)

    def unknown(self) -> list[str]:
        """Fields of this mapping that no read so far has asked for (typos, unless a later read asks)."""
        return sorted(map(str, set(self.data) - self._seen))

    def finish(self) -> None:
        unknown = self.unknown()
        if unknown:
            raise ConfigError(f"{self.path or 'config'}: unknown field(s) {', '.join(unknown)}")


def _model(name: str, data: Any) -> ModelConfig:
    r = _Reader(data, f"models.{name}")
    provider = r.get("provider", str, required=True)
    if provider not in ("openai", "anthropic"):
        raise ConfigError(f"models.{name}.provider: must be 'openai' or 'anthropic', got {provider!r}")
    base_url = r.get("base_url", str, required=True).rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"models.{name}.base_url: must start with http:// or https://, got {base_url!r}")
    key = SecretRef(env=r.get("api_key_env", str), file=r.path_("api_key_file"))
    cfg = ModelConfig(
        name=name,
        provider=provider,  # type: ignore[arg-type]
        base_url=base_url,
        provider_model=r.get("provider_model", str, name),
        api_key=key,
        price_in_per_mtok=r.non_negative("price_in_per_mtok", float, None, required=True),
        price_out_per_mtok=r.non_negative("price_out_per_mtok", float, None, required=True),
        connect_timeout_s=r.positive("connect_timeout_s", float, 5.0),
        read_timeout_s=r.positive("read_timeout_s", float, 60.0),
        max_connections=r.positive("max_connections", int, 100),
        pool_timeout_s=r.positive("pool_timeout_s", float, ModelConfig.pool_timeout_s),
        default_max_tokens=r.positive("default_max_tokens", int, 1024),
        max_tokens_cap=r.get("max_tokens_cap", int),
        features=_features(r, provider),
    )
    if cfg.max_tokens_cap is not None and cfg.max_tokens_cap < 1:
        raise ConfigError(f"models.{name}.max_tokens_cap: must be > 0, got {cfg.max_tokens_cap}")
    r.finish()
    return cfg


def _features(r: _Reader, provider: str) -> frozenset[str] | None:
    from gateway.capabilities import PROVIDER_FEATURES  # the one list of features per provider kind

    value = r.raw("features")
    if value is None:
        return None
    possible = PROVIDER_FEATURES[provider]
    if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
        raise ConfigError(f"{r.path}.features: a list of feature names is required")
    unknown = sorted(set(value) - possible)
    if unknown:
        raise ConfigError(
            f"{r.path}.features: {', '.join(unknown)} not among what provider {provider!r} can do "
            f"({', '.join(sorted(possible))})"
        )
    return frozenset(value)


def parse_config(data: Any) -> GatewayConfig:
    """Validate a parsed YAML document into a :class:`GatewayConfig`."""
    top = _Reader(data, "")
    models_raw = top.raw("models")
    if not isinstance(models_raw, Mapping) or not models_raw:
        raise ConfigError("models: at least one model is required")
    models = {str(n): _model(str(n), d) for n, d in models_raw.items()}

    tiers = parse_tiers(top.raw("tiers"), models)

    rr = _Reader(top.raw("routing"), "routing")
    routing = RoutingConfig(
        default_router=rr.get("default_router", str, "mf"),
        fallback_to_other_tier=rr.get("fallback_to_other_tier", bool, True),
        scorer_down_tier=tier_field(rr, "scorer_down_tier", "strong", tiers),
        tier_rule=rule_field(rr, tiers, models),
    )
    rr.finish()
    calibration = parse_calibration(_Reader(top.raw("calibration"), "calibration"))
    sticky = parse_sticky(_Reader(top.raw("sticky"), "sticky"))
    llm_routers = parse_llm_routers(top.raw("llm_routers"), top, models)
    policies = parse_policies(
        top.raw("policies"),
        top,
        tiers=tiers,
        models=models,
        default_router=routing.default_router,
        default_down_tier=routing.scorer_down_tier,
        online_calibration=calibration.online,
        tier_rule=routing.tier_rule,
    )

    sr = _Reader(top.raw("scorer"), "scorer")
    d = ScorerClientConfig
    target = sr.get("target", str, d.target)
    try:
        grpc_target(target)
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(f"scorer.target: {exc}") from None
    keepalive_time_ms = sr.grpc_duration("keepalive_time_ms", int, d.keepalive_time_ms, ms=True)
    if keepalive_time_ms < keepalive.MIN_PING_INTERVAL_MS:
        raise ConfigError(
            f"scorer.keepalive_time_ms: must be >= {keepalive.MIN_PING_INTERVAL_MS} (the scorer refuses pings more "
            f"often: GOAWAY too_many_pings), got {keepalive_time_ms}"
        )
    scorer = ScorerClientConfig(
        target=target,
        deadline_ms=sr.positive("deadline_ms", float, d.deadline_ms),
        list_routers_deadline_ms=sr.positive("list_routers_deadline_ms", float, d.list_routers_deadline_ms),
        calibration_refresh_s=sr.positive("calibration_refresh_s", float, d.calibration_refresh_s),
        keepalive_time_ms=keepalive_time_ms,
        keepalive_timeout_ms=sr.grpc_duration("keepalive_timeout_ms", int, d.keepalive_timeout_ms, ms=True),
        fallback_warn_share=sr.unit("fallback_warn_share", d.fallback_warn_share) or 0.0,
        fallback_window_s=sr.positive("fallback_window_s", float, d.fallback_window_s),
        self_check=sr.get("self_check", bool, d.self_check),
    )
    sr.finish()

    rt = _Reader(top.raw("retry"), "retry")
    retry = RetryConfig(
        max_retries=rt.non_negative("max_retries", int, RetryConfig.max_retries),
        base_delay_s=rt.non_negative("base_delay_s", float, RetryConfig.base_delay_s),
        max_delay_s=rt.non_negative("max_delay_s", float, RetryConfig.max_delay_s),
        max_retry_after_s=rt.non_negative("max_retry_after_s", float, RetryConfig.max_retry_after_s),
        retry_read_timeouts=rt.get("retry_read_timeouts", bool, RetryConfig.retry_read_timeouts),
    )
    rt.finish()

    br = _Reader(top.raw("breaker"), "breaker")
    br.moved("fail_max", "breakers open on a failure rate: set breaker.failure_rate and breaker.min_requests")
    failure_rate = br.unit("failure_rate")
    breaker = BreakerConfig(
        failure_rate=BreakerConfig.failure_rate if failure_rate is None else failure_rate,
        min_requests=br.positive("min_requests", int, BreakerConfig.min_requests),
        window_s=br.positive("window_s", float, BreakerConfig.window_s),
        reset_timeout_s=br.positive("reset_timeout_s", float, BreakerConfig.reset_timeout_s),
        success_threshold=br.positive("success_threshold", int, BreakerConfig.success_threshold),
        redis_url_env=br.get("redis_url_env", str, BreakerConfig.redis_url_env),
        redis_namespace=br.get("redis_namespace", str, BreakerConfig.redis_namespace),
        redis_retry_s=br.positive("redis_retry_s", float, BreakerConfig.redis_retry_s),
        redis_socket_timeout_s=br.positive("redis_socket_timeout_s", float, BreakerConfig.redis_socket_timeout_s),
        redis_sync_s=br.positive("redis_sync_s", float, BreakerConfig.redis_sync_s),
    )
    if breaker.failure_rate == 0:
        raise ConfigError("breaker.failure_rate: must be > 0 (0 would open on the first request)")
    br.finish()

    sv = _Reader(top.raw("server"), "server")
    sv.moved("max_body_bytes", "it is limits.max_body_bytes now")
    server = ServerConfig(
        grpc_host=sv.get("grpc_host", str, ServerConfig.grpc_host),
        grpc_port=sv.port("grpc_port", ServerConfig.grpc_port),
        http_host=sv.get("http_host", str, ServerConfig.http_host),
        http_port=sv.port("http_port", ServerConfig.http_port),
        request_timeout_s=sv.grpc_duration("request_timeout_s", float, ServerConfig.request_timeout_s),
        stream_idle_timeout_s=sv.positive("stream_idle_timeout_s", float, ServerConfig.stream_idle_timeout_s),
        drain_s=sv.positive("drain_s", float, ServerConfig.drain_s),
        grpc_max_connection_age_s=sv.grpc_duration(
            "grpc_max_connection_age_s", float, ServerConfig.grpc_max_connection_age_s, zero=True
        ),
        log_prompts=sv.get("log_prompts", bool, False),
    )
    sv.finish()
    _check_request_timeout(server, scorer, models)

    ar = _Reader(top.raw("auth"), "auth")
    auth = AuthConfig(
        disabled=ar.get("disabled", bool, False),
        keys_env=ar.get("keys_env", str, AuthConfig.keys_env),
        keys_file=ar.path_("keys_file"),
    )
    ar.finish()
    learning = parse_learning(_Reader(top.raw("learning"), "learning"), models, policies)
    limits = _limits(_Reader(top.raw("limits"), "limits"))
    ad = _Reader(top.raw("admin"), "admin")
    admin = AdminConfig(host=ad.get("host", str, AdminConfig.host), port=ad.port("port", AdminConfig.port))
    ad.finish()
    top.finish()
    return GatewayConfig(
        models,
        tiers,
        policies,
        routing,
        scorer,
        retry,
        breaker,
        server,
        auth,
        learning,
        limits=limits,
        admin=admin,
        calibration=calibration,
        sticky=sticky,
        llm_routers=llm_routers,
    )


def _check_request_timeout(server: ServerConfig, scorer: ScorerClientConfig, models: Mapping[str, ModelConfig]) -> None:
    """A request must outlive a Score that takes its whole deadline plus one connect attempt that takes its whole
    timeout: with less, a slow scorer or an unreachable model ends the request instead of sending it to the
    scorer-down tier or the next model (and a timeout below both fails every request)."""
    slowest = max(models.values(), key=lambda m: m.connect_timeout_s)
    floor = scorer.deadline_ms / 1000 + slowest.connect_timeout_s
    if server.request_timeout_s <= floor:
        raise ConfigError(
            f"server.request_timeout_s: must be greater than scorer.deadline_ms ({scorer.deadline_ms:g} ms) + the "
            f"longest connect timeout (models.{slowest.name}.connect_timeout_s: {slowest.connect_timeout_s:g} s) = "
            f"{floor:g} s, or a slow scorer or an unreachable model ends the request before its fallback; "
            f"got {server.request_timeout_s:g}"
        )


def _limits(r: _Reader) -> LimitsConfig:
    d = LimitsConfig
    limits = LimitsConfig(
        max_body_bytes=r.positive("max_body_bytes", int, d.max_body_bytes),
        max_header_bytes=r.positive("max_header_bytes", int, d.max_header_bytes),
        max_header_count=r.positive("max_header_count", int, d.max_header_count),
        header_timeout_s=r.positive("header_timeout_s", float, d.header_timeout_s),
        body_timeout_s=r.positive("body_timeout_s", float, d.body_timeout_s),
        write_timeout_s=r.positive("write_timeout_s", float, d.write_timeout_s),
        max_messages=r.positive("max_messages", int, d.max_messages),
        max_stop=r.positive("max_stop", int, d.max_stop),
        max_tokens=r.positive("max_tokens", int, d.max_tokens),
        max_response_bytes=r.positive("max_response_bytes", int, d.max_response_bytes),
        max_tools=r.positive("max_tools", int, d.max_tools),
        max_schema_bytes=r.positive("max_schema_bytes", int, d.max_schema_bytes),
        max_schema_depth=r.positive("max_schema_depth", int, d.max_schema_depth),
        max_n=r.positive("max_n", int, d.max_n),
    )
    r.finish()
    return limits


def load_config(path: Path) -> GatewayConfig:
    """Read and validate a YAML configuration file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader that refuses duplicate keys
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    try:
        return parse_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader refusing a mapping that names a key twice: PyYAML keeps the last one silently, so a
    second ``policies:`` appended to the file would drop every policy of the first."""


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    first: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:  # `<<: *anchor`: keys given beside it override the anchor's, as YAML means
            continue
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, Hashable) and key in first:
            raise yaml.constructor.ConstructorError(
                problem=f"duplicate key {key!r} (line {key_node.start_mark.line + 1}, column "
                f"{key_node.start_mark.column + 1}; first at line {first[key].line + 1}): the later one would "
                "replace the earlier",
            )
        if isinstance(key, Hashable):
            first[key] = key_node.start_mark
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: what is wrong and where (PyYAML's own text spans lines)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


def default_config_path() -> Path:
    """The configuration used when ``--config`` is not given: ``$FERRYMAN_GATEWAY_CONFIG``, else config/gateway.yaml."""
    return Path(os.environ.get("FERRYMAN_GATEWAY_CONFIG", "config/gateway.yaml"))


def add_config_argument(parser: argparse.ArgumentParser, *, or_else: str = "") -> None:
    """The ``--config`` flag shared by ``ferryman gateway``, ``ferryman up`` and ``ferryman learn judge``.

    ``or_else``: the caller has another default in some mode (``up --demo``), said in the help; then
    ``args.config`` is None when the flag is not given and the caller resolves it
    (:func:`default_config_path` outside that mode).
    """
    default = default_config_path()
    parser.add_argument(
        "--config",
        type=Path,
        default=None if or_else else default,
        help="gateway YAML configuration (env FERRYMAN_GATEWAY_CONFIG)"
        + (f" (default: {default}; {or_else})" if or_else else ""),
    )
