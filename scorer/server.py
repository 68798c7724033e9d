"""gRPC server of the scorer: thin servicer, health, reflection, metrics, graceful stop.

The servicer converts proto → domain (``scorer.core``) → proto and nothing else.
Domain errors become status codes in exactly one place (``ScorerServicer._guarded``);
anything unexpected is logged here with its traceback and reaches the client as
INTERNAL with a generic message.

``create_server(config)`` starts a server (health NOT_SERVING), loads every router,
then flips health to SERVING and returns ``(server, port)``; tests pass port 0. ``serving(config)``
and ``serving_in_thread(config)`` run an embedded server (evaluation, tests) and yield its address.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from ferryman.scorer.v1 import scorer_pb2, scorer_pb2_grpc
from scorer.batching import MicroBatcher
from scorer.config import ScorerConfig
from scorer.core import Message, Prepared, ScoreQuery, ScorerCore, ScoreResult, TurnSelection
from scorer.errors import InvalidInputError, ScorerError, UnavailableError
from scorer.metrics import ScorerMetrics

log = logging.getLogger(__name__)
R = TypeVar("R")
SERVICE_NAME = scorer_pb2.DESCRIPTOR.services_by_name["ScorerService"].full_name
_TURNS = {
    scorer_pb2.TURN_SELECTION_UNSPECIFIED: TurnSelection.LAST_USER,
    scorer_pb2.TURN_SELECTION_LAST_USER: TurnSelection.LAST_USER,
    scorer_pb2.TURN_SELECTION_ALL_USER: TurnSelection.ALL_USER,
}


def router_type(kind: str) -> scorer_pb2.RouterType:
    """``ROUTER_TYPE_<KIND>`` of the proto enum; ``ROUTER_TYPE_UNSPECIFIED`` for a kind the enum lacks."""
    try:
        return scorer_pb2.RouterType.Value(f"ROUTER_TYPE_{kind.upper()}")  # type: ignore[return-value]
    except ValueError:
        return scorer_pb2.ROUTER_TYPE_UNSPECIFIED


def query_from_proto(req: scorer_pb2.ScoreRequest) -> ScoreQuery:
    """Proto → domain request."""
    which = req.WhichOneof("input")
    turns = _TURNS.get(req.turn_selection)
    if turns is None:
        raise InvalidInputError(f"unknown turn_selection {req.turn_selection}")
    conversation = None
    if which == "conversation":
        conversation = [Message(m.role, m.content) for m in req.conversation.messages]
    return ScoreQuery(
        router=req.router,
        prompt=req.prompt if which != "conversation" else None,
        conversation=conversation,
        strong_model=req.strong_model,
        weak_model=req.weak_model,
        turns=turns,
    )


def result_to_proto(res: ScoreResult, server_time_ms: float = 0.0) -> scorer_pb2.ScoreResponse:
    """Domain → proto response; ``server_time_ms``: the servicer's time on the request."""
    return scorer_pb2.ScoreResponse(
        strong_win_rate=res.strong_win_rate,
        router=res.router,
        router_version=res.router_version,
        strong_model=res.strong_model,
        weak_model=res.weak_model,
        server_time_ms=server_time_ms,
    )


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def routers_to_proto(core: ScorerCore) -> scorer_pb2.ListRoutersResponse:
    """Every loaded router's manifest."""
    out = scorer_pb2.ListRoutersResponse()
    for name, router in core.routers.items():
        m = router.manifest
        cal = m.calibration
        out.routers.append(
            scorer_pb2.RouterInfo(
                name=name,
                type=router_type(m.kind),
                version=m.version,
                models=router.known_models(),
                default_strong_model=m.default_strong,
                default_weak_model=m.default_weak,
                calibration=[
                    scorer_pb2.CalibrationPoint(strong_share=p.strong_share, threshold=p.threshold)
                    for p in (cal.points if cal else ())
                ],
                calibration_reference=cal.reference if cal else "",
                encoder=m.encoder.name if m.encoder and m.kind != "random" else "",
                provenance=dict(m.provenance),
            )
        )
    return out


class ScorerServicer(scorer_pb2_grpc.ScorerServiceServicer):
    """Thin gRPC adapter over ``ScorerCore`` and the micro-batcher."""

    def __init__(self, server: ScorerServer) -> None:
        self._server = server

    async def Score(self, request: scorer_pb2.ScoreRequest, context: grpc.aio.ServicerContext) -> Any:
        async def work() -> scorer_pb2.ScoreResponse:
            started = time.perf_counter()
            core, batcher = self._server.ready()
            item = core.prepare(query_from_proto(request))
            scores = await batcher.submit([item], _deadline(context))
            return result_to_proto(core.result(item, float(scores[0])), _ms_since(started))

        return await self._guarded("Score", request.router, context, work)

    async def BatchScore(self, request: scorer_pb2.BatchScoreRequest, context: grpc.aio.ServicerContext) -> Any:
        routers = {r.router for r in request.requests}
        label = routers.pop() if len(routers) == 1 else "mixed"

        async def work() -> scorer_pb2.BatchScoreResponse:
            started = time.perf_counter()
            core, batcher = self._server.ready()
            items = core.prepare_batch([query_from_proto(r) for r in request.requests])
            scores = await batcher.submit(items, _deadline(context))
            took_ms = _ms_since(started)
            return scorer_pb2.BatchScoreResponse(
                responses=[
                    result_to_proto(core.result(it, float(s)), took_ms) for it, s in zip(items, scores, strict=True)
                ]
            )

        return await self._guarded("BatchScore", label, context, work)

    async def ListRouters(self, request: scorer_pb2.ListRoutersRequest, context: grpc.aio.ServicerContext) -> Any:
        async def work() -> scorer_pb2.ListRoutersResponse:
            return routers_to_proto(self._server.ready()[0])

        return await self._guarded("ListRouters", "", context, work)

    async def _guarded(
        self, method: str, router: str, context: grpc.aio.ServicerContext, work: Callable[[], Awaitable[R]]
    ) -> R:
        """The one place where exceptions become status codes (and metrics are recorded)."""
        metrics = self._server.metrics
        core = self._server.core
        # Label values must stay bounded: a name that is not a loaded router is "unknown".
        if router not in ("", "mixed") and (core is None or router not in core.routers):
            router = "unknown"
        with _timed(metrics, method, router) as outcome:
            try:
                return await work()
            except ScorerError as exc:
                outcome[0] = exc.code
                await context.abort(exc.code, str(exc))
            except asyncio.CancelledError:
                outcome[0] = grpc.StatusCode.CANCELLED
                raise
            except Exception:
                log.exception("%s failed unexpectedly", method)
                outcome[0] = grpc.StatusCode.INTERNAL
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        raise AssertionError("unreachable: context.abort raises")


@contextmanager
def _timed(metrics: ScorerMetrics, method: str, router: str) -> Iterator[list[grpc.StatusCode]]:
    outcome = [grpc.StatusCode.OK]
    start = time.perf_counter()
    try:
        yield outcome
    finally:
        metrics.requests.labels(method, router, outcome[0].name).inc()
        metrics.latency.labels(method, router).observe(time.perf_counter() - start)


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    left = context.time_remaining()
    return None if left is None else asyncio.get_running_loop().time() + left


class ScorerServer:
    """The running service: gRPC server, health, batcher, metrics endpoint."""

    def __init__(self, config: ScorerConfig) -> None:
        self.config = config
        self.core: ScorerCore | None = None
        self.batcher: MicroBatcher[Prepared] | None = None
        self.metrics = ScorerMetrics(lambda: self.batcher.queue_depth() if self.batcher else 0)
        opts = [
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
        ]
        self.grpc = grpc.aio.server(options=opts)
        self.health = health.aio.HealthServicer()
        self.port = 0
        self._metrics_http: Any = None

    def ready(self) -> tuple[ScorerCore, MicroBatcher[Prepared]]:
        """The core and batcher, or ``UnavailableError`` while routers are still loading."""
        if self.core is None or self.batcher is None:
            raise UnavailableError("routers are still loading")
        return self.core, self.batcher

    async def start(self) -> int:
        """Bind and start serving health (NOT_SERVING) and reflection; returns the bound port."""
        cfg = self.config
        scorer_pb2_grpc.add_ScorerServiceServicer_to_server(ScorerServicer(self), self.grpc)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        reflection.enable_server_reflection(known_services(), self.grpc)
        for service in ("", SERVICE_NAME):
            await self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        try:
            try:
                self.port = self.grpc.add_insecure_port(f"{cfg.host}:{cfg.port}")
            except RuntimeError as exc:  # grpcio raises RuntimeError when the port is taken
                raise OSError(f"cannot bind gRPC port {cfg.host}:{cfg.port}") from exc
            if self.port == 0:
                raise OSError(f"cannot bind gRPC port {cfg.host}:{cfg.port}")
            await self.grpc.start()
            if cfg.metrics_port:
                try:
                    self._metrics_http, _ = start_http_server(
                        cfg.metrics_port, addr=cfg.host, registry=self.metrics.registry
                    )
                except OSError as exc:
                    raise OSError(f"cannot bind metrics port {cfg.host}:{cfg.metrics_port}: {exc.strerror}") from exc
        except OSError:
            # Stop the half-started server inside the loop; otherwise grpc's finalizer runs after
            # the loop has closed and prints a traceback over the real error.
            await self.grpc.stop(None)
            raise
        return self.port

    async def load(self) -> None:
        """Load every router (in a thread), start batching, then report SERVING."""
        cfg = self.config
        core = await asyncio.to_thread(
            ScorerCore.load,
            cfg.routers_dir,
            cfg.encoder_dir,
            precision=cfg.encoder_precision,
            threads=cfg.intra_op_threads,
            idle_threads=cfg.idle_intra_op_threads,
            rows_per_run=cfg.rows_per_run,
            limits=cfg.limits,
            only=cfg.routers,
        )
        batcher: MicroBatcher[Prepared] = MicroBatcher(
            core.score_prepared, cfg.batching, on_batch=self.metrics.batch_size.observe
        )
        batcher.start()
        self.core, self.batcher = core, batcher
        for service in ("", SERVICE_NAME):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float | None = None) -> None:
        """Graceful stop: health NOT_SERVING, refuse new calls, finish in-flight ones, stop workers."""
        await self.health.enter_graceful_shutdown()
        await self.grpc.stop(self.config.grace_s if grace is None else grace)
        if self.batcher is not None:
            await self.batcher.close(timeout=self.config.grace_s)
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http = None

    async def wait_for_termination(self) -> None:
        await self.grpc.wait_for_termination()


async def create_server(config: ScorerConfig) -> tuple[ScorerServer, int]:
    """Start a scorer with every router loaded; returns the server and its bound port.

    Raises ``ArtifactError`` (after stopping what it started) if any artifact is bad.
    """
    server = ScorerServer(config)
    port = await server.start()
    try:
        await server.load()
    except BaseException:
        await server.stop(0)
        raise
    return server, port


def known_services() -> Sequence[str]:
    """Services a scorer exposes (what ``grpcurl list`` shows)."""
    return (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)


@asynccontextmanager
async def serving(config: ScorerConfig) -> AsyncIterator[str]:
    """Run a scorer in the caller's event loop (an embedded server, e.g. for evaluation or tests);
    yields ``"HOST:PORT"`` once every router is loaded and stops it afterwards."""
    server, port = await create_server(config)
    try:
        yield f"{config.host}:{port}"
    finally:
        await server.stop(0)


@contextmanager
def serving_in_thread(config: ScorerConfig) -> Iterator[str]:
    """``serving`` on its own event loop in a daemon thread, for synchronous callers."""
    ready = threading.Event()
    box: dict[str, object] = {}

    async def main() -> None:
        try:
            async with serving(config) as address:
                box["address"], box["stop"] = address, asyncio.Event()
                box["loop"] = asyncio.get_running_loop()
                ready.set()
                await box["stop"].wait()  # type: ignore[attr-defined]
        except BaseException as exc:
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="scorer-embedded", daemon=True)
    thread.start()
    ready.wait()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    try:
        yield str(box["address"])
    finally:
        loop = box["loop"]
        loop.call_soon_threadsafe(box["stop"].set)  # type: ignore[attr-defined]
        thread.join(timeout=30)
