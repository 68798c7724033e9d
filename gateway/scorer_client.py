"""The gateway's client of the scorer: Score under a tight deadline, ListRouters for calibration.

Only the generated stubs are used (the gateway never imports the scorer package). The
channel load-balances ``round_robin`` over every address the ``dns:///`` target resolves
to (one per scorer pod behind a headless Service) and sends keepalive pings so that dead
connections are noticed between requests.
"""

from __future__ import annotations

import json
import time
from typing import Any, NamedTuple

import grpc

from ferryman.scorer.v1 import scorer_pb2, scorer_pb2_grpc
from gateway.config import ScorerClientConfig
from gateway.metrics import Metrics
from gateway.types import Message


class ScorerUnavailableError(Exception):
    """The scorer did not answer in time or at all (the caller uses the default tier); the message is a short
    reason (the gRPC status name, or NO_CALIBRATION)."""


class ScorerRejectedError(Exception):
    """The scorer refused the request (unknown router or model): the client's mistake. ``unknown_router``: the
    scorer does not serve the router named (its NOT_FOUND), as opposed to a bad request for one it serves."""

    def __init__(self, message: str, *, unknown_router: bool = False) -> None:
        super().__init__(message)
        self.unknown_router = unknown_router


_CLIENT_CODES = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)


#: The channel's service config. ``healthCheckConfig``: round_robin sends calls only to scorers whose
#: grpc.health.v1 says SERVING for the scorer service (gRPC client-side health checking), so a scorer
#: restarted in place, listening while its routers load, or draining after SIGTERM gets none (it
#: refuses them: each such request lost its score). ``retryPolicy``: a call answered UNAVAILABLE (a
#: scorer killed with calls in flight, a race with its health) is tried again on the next scorer
#: within the call's deadline; ``retryThrottling`` stops retrying while most calls fail (every
#: scorer down): a bucket of 100 tokens, each failure takes 1, each success gives back 0.1, no
#: retry below half.
SCORER_SERVICE = scorer_pb2.DESCRIPTOR.services_by_name["ScorerService"].full_name
SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": SCORER_SERVICE}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.005s",
                    "maxBackoff": "0.02s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
        "retryThrottling": {"maxTokens": 100, "tokenRatio": 0.1},
        "healthCheckConfig": {"serviceName": SCORER_SERVICE},
    }
)


def channel_options(cfg: ScorerClientConfig) -> list[tuple[str, int | str]]:
    """Channel arguments: round-robin over the resolved scorers that report SERVING, retries on UNAVAILABLE,
    keepalives."""
    return [
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", SERVICE_CONFIG),
        ("grpc.keepalive_time_ms", cfg.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", cfg.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # a scorer that was down is retried at least every 5 s (gRPC's default backoff grows to 120 s)
        ("grpc.max_reconnect_backoff_ms", 5000),
    ]


def last_user_turn(messages: tuple[Message, ...]) -> str:
    """The text the scorer scores for a chat: its last user message ("" when there is none)."""
    return next((m.content for m in reversed(messages) if m.role == "user"), "")


class ScoreReply(NamedTuple):
    """A Score answer: the strong model's win probability, the scorer's own time on it, and the artifact."""

    strong_win_rate: float
    server_ms: float
    artifact_version: str = ""  # "<version>@<digest>" of the router artifact that scored it


class PairScores(NamedTuple):
    """Win rates for several (strong, weak) pairs of one prompt, in order, the scorer's time and artifact."""

    rates: tuple[float, ...]
    server_ms: float
    artifact_version: str = ""


class ScorerClient:
    """Thin async wrapper around ``ScorerServiceStub``; create it inside the running event loop."""

    def __init__(self, cfg: ScorerClientConfig, metrics: Metrics) -> None:
        self._cfg = cfg
        self._metrics = metrics
        self._channel = grpc.aio.insecure_channel(cfg.target, options=channel_options(cfg))
        self._stub = scorer_pb2_grpc.ScorerServiceStub(self._channel)

    async def score(self, router: str, messages: tuple[Message, ...], strong_model: str, weak_model: str) -> ScoreReply:
        """The strong model's win probability for the conversation's last user turn.

        Only that turn is sent (as the prompt): the scorer reads nothing else, and a long chat
        would otherwise cost bytes and parsing on both sides and could pass the scorer's limits.
        """
        return await self.score_text(router, last_user_turn(messages), strong_model, weak_model)

    async def score_text(
        self, router: str, text: str, strong_model: str, weak_model: str, *, timeout_s: float | None = None
    ) -> ScoreReply:
        """Score one prompt; ``timeout_s`` defaults to ``deadline_ms``."""
        request = scorer_pb2.ScoreRequest(router=router, prompt=text, strong_model=strong_model, weak_model=weak_model)
        timeout = self._cfg.deadline_ms / 1000 if timeout_s is None else timeout_s
        response = await self._call(self._stub.Score, request, timeout)
        return ScoreReply(response.strong_win_rate, response.server_time_ms, response.artifact_version)

    async def _call(self, rpc: Any, request: Any, timeout: float) -> Any:
        """One scoring RPC: client mistakes raise ScorerRejectedError, anything else ScorerUnavailableError."""
        started = time.perf_counter()
        try:
            return await rpc(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code in _CLIENT_CODES:
                raise ScorerRejectedError(
                    exc.details() or code.name, unknown_router=code == grpc.StatusCode.NOT_FOUND
                ) from exc
            self._metrics.scorer_failures.labels(code.name).inc()
            raise ScorerUnavailableError(code.name) from exc
        finally:
            self._metrics.scorer_latency.observe(time.perf_counter() - started)

    async def score_pairs(
        self, router: str, messages: tuple[Message, ...], pairs: tuple[tuple[str, str], ...]
    ) -> PairScores:
        """The last user turn's win rate for every (strong, weak) pair: one Score for one pair, else one
        BatchScore (the scorer embeds the prompt once for all of them)."""
        text = last_user_turn(messages)
        if len(pairs) == 1:
            reply = await self.score_text(router, text, *pairs[0])
            return PairScores((reply.strong_win_rate,), reply.server_ms, reply.artifact_version)
        request = scorer_pb2.BatchScoreRequest(
            requests=[
                scorer_pb2.ScoreRequest(router=router, prompt=text, strong_model=strong, weak_model=weak)
                for strong, weak in pairs
            ]
        )
        response = await self._call(self._stub.BatchScore, request, self._cfg.deadline_ms / 1000)
        first = response.responses[0] if response.responses else scorer_pb2.ScoreResponse()
        rates = tuple(r.strong_win_rate for r in response.responses)
        return PairScores(rates, first.server_time_ms, first.artifact_version)

    async def list_routers(self) -> list[scorer_pb2.RouterInfo]:
        """Every loaded router with its calibration table."""
        try:
            response = await self._stub.ListRouters(
                scorer_pb2.ListRoutersRequest(), timeout=self._cfg.list_routers_deadline_ms / 1000
            )
        except grpc.aio.AioRpcError as exc:
            raise ScorerUnavailableError(exc.code().name) from exc
        return list(response.routers)

    async def close(self) -> None:
        await self._channel.close()
