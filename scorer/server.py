"""gRPC server of the scorer: typed servicer, interceptors, health, reflection, metrics, graceful stop.

The servicer converts proto → domain → proto and nothing else; the work is the scoring plane's
(``scorer.plane.ScoringPlane``, shared with ``ferryman score``). Metrics, status mapping and
request-size admission are interceptors (``scorer.interceptors``): domain errors become status
codes there, in one place, and anything unexpected is logged with its traceback and reaches the
client as INTERNAL with a generic message.

``create_server(config)`` starts a server (health NOT_SERVING), loads every router, times a
full-window Score per router (logged, and exported as ``ferryman_scorer_full_window_seconds``),
then flips health to SERVING and returns ``(server, port)``; tests pass port 0. ``serving(config)``
and ``serving_in_thread(config)`` run an embedded server (evaluation, tests) and yield its address.
A port in use is a start-up error (no SO_REUSEPORT unless ``reuse_port``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from ferryman import keepalive
from ferryman.scorer.v1 import scorer_pb2, scorer_pb2_grpc
from scorer.artifacts import encoder_label
from scorer.config import ScorerConfig
from scorer.core import ScoreQuery, ScorerCore, ScoreResult, TurnSelection
from scorer.errors import InvalidInputError, UnavailableError
from scorer.interceptors import MetricsInterceptor, SizeLimitInterceptor, StatusInterceptor
from scorer.metrics import ScorerMetrics
from scorer.plane import ScoringPlane
from scorer.reload import Reloader, ReloadEvent

log = logging.getLogger(__name__)
#: How long a stopping scorer keeps serving after health turns NOT_SERVING, before new calls are refused.
HEALTH_NOTICE_S = 0.5
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
    """Proto → domain request (the conversation's messages are passed as received, not copied)."""
    which = req.WhichOneof("input")
    turns = _TURNS.get(req.turn_selection)
    if turns is None:
        raise InvalidInputError(f"unknown turn_selection {req.turn_selection}")
    return ScoreQuery(
        router=req.router,
        prompt=req.prompt if which != "conversation" else None,
        conversation=req.conversation.messages if which == "conversation" else None,
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
        artifact_version=res.artifact_version,
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
                encoder=encoder_label(m.encoder) if m.encoder and m.kind != "random" else "",
                provenance=dict(m.provenance),
                artifact_version=core.artifact_versions.get(name, ""),
            )
        )
    return out


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    left = context.time_remaining()
    return None if left is None else asyncio.get_running_loop().time() + left


class ScorerServicer(scorer_pb2_grpc.ScorerServiceServicer):
    """Typed adapter: proto → ``ScoringPlane`` → proto. Errors are mapped by ``StatusInterceptor``.

    The caller a request is queued for (fair queuing, ``scorer.batching``) is its connection's peer.
    """

    def __init__(self, server: ScorerServer) -> None:
        self._server = server

    async def Score(
        self, request: scorer_pb2.ScoreRequest, context: grpc.aio.ServicerContext
    ) -> scorer_pb2.ScoreResponse:
        started = time.perf_counter()
        plane = self._server.ready()
        result = await plane.score(query_from_proto(request), caller=context.peer(), deadline=_deadline(context))
        return result_to_proto(result, _ms_since(started))

    async def BatchScore(
        self, request: scorer_pb2.BatchScoreRequest, context: grpc.aio.ServicerContext
    ) -> scorer_pb2.BatchScoreResponse:
        started = time.perf_counter()
        plane = self._server.ready()
        queries = [query_from_proto(r) for r in request.requests]
        results = await plane.score_batch(queries, caller=context.peer(), deadline=_deadline(context))
        took_ms = _ms_since(started)
        return scorer_pb2.BatchScoreResponse(responses=[result_to_proto(r, took_ms) for r in results])

    async def ListRouters(
        self, request: scorer_pb2.ListRoutersRequest, context: grpc.aio.ServicerContext
    ) -> scorer_pb2.ListRoutersResponse:
        return routers_to_proto(self._server.ready().core)


class ScorerServer:
    """The running service's lifecycle: gRPC server, health, scoring plane, metrics endpoint."""

    def __init__(self, config: ScorerConfig) -> None:
        self.config = config
        self.plane: ScoringPlane | None = None
        self.metrics = ScorerMetrics(
            lambda: self.plane.batcher.queue_depth() if self.plane else 0,
            lambda: self.plane.batcher.queued_cost() if self.plane else 0,
        )
        opts = [
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 1 if config.reuse_port else 0),
            *keepalive.server_options(),  # the gateway's idle keepalive pings
            # no age grace: the calls under way always finish (a BatchScore too)
            *keepalive.max_age_options(config.max_connection_age_s),
        ]
        limits = {"Score": config.max_score_bytes, "BatchScore": config.max_batch_score_bytes}
        interceptors = [
            MetricsInterceptor(SERVICE_NAME, self.metrics),
            StatusInterceptor(SERVICE_NAME),
            SizeLimitInterceptor(SERVICE_NAME, limits, self.router_label),
        ]
        self.grpc = grpc.aio.server(options=opts, interceptors=interceptors)
        self.health = health.aio.HealthServicer()
        self.port = 0
        self._metrics_http: Any = None
        self.reloader: Reloader | None = None
        self._reload_tasks: set[asyncio.Task[list[ReloadEvent]]] = set()

    @property
    def core(self) -> ScorerCore | None:
        """The loaded routers (None while loading)."""
        return self.plane.core if self.plane else None

    def ready(self) -> ScoringPlane:
        """The scoring plane, or ``UnavailableError`` while routers are still loading."""
        if self.plane is None:
            raise UnavailableError("routers are still loading")
        return self.plane

    def router_label(self, request: Any) -> str:
        """A bounded metrics label for a request: its router, "mixed", "" (ListRouters) or "unknown"."""
        if isinstance(request, scorer_pb2.BatchScoreRequest):
            names = {r.router for r in request.requests}
            if len(names) != 1:
                return "mixed"
            name = names.pop()
        elif isinstance(request, scorer_pb2.ScoreRequest):
            name = request.router
        else:
            return ""
        core = self.core
        return name if core is not None and name in core.routers else "unknown"

    async def start(self) -> int:
        """Bind and start serving health (NOT_SERVING) and reflection; returns the bound port."""
        cfg = self.config
        scorer_pb2_grpc.add_ScorerServiceServicer_to_server(ScorerServicer(self), self.grpc)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        reflection.enable_server_reflection(known_services(), self.grpc)
        for service in ("", SERVICE_NAME):
            await self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        in_use = f"cannot bind gRPC port {cfg.host}:{cfg.port}: address in use or not available"
        try:
            try:
                self.port = self.grpc.add_insecure_port(f"{cfg.host}:{cfg.port}")
            except RuntimeError as exc:  # grpcio raises RuntimeError when the port is taken
                raise OSError(in_use) from exc
            if self.port == 0:
                raise OSError(in_use)
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
        """Load every router (in a thread), start the plane, time a full window per router, then SERVING."""
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
        plane = ScoringPlane(core, cfg.batching, on_batch=self.metrics.batch_size.observe)
        plane.start()
        try:
            timings = await plane.time_full_windows()
        except BaseException:
            await plane.close(timeout=0)
            raise
        for t in timings:
            self.metrics.full_window.labels(t.router).set(t.seconds)
        if timings:
            log.info(
                "full-window Score on this machine (a prompt past the window, alone): %s",
                ", ".join(f"{t.router} {t.seconds * 1000:.1f} ms ({t.window} tokens)" for t in timings),
            )
        self.plane = plane
        for name, version in core.artifact_versions.items():
            self.metrics.serving(name, version)
        self.reloader = Reloader(core, interval_s=cfg.reload_interval_s, on_event=self._reloaded)
        self.reloader.start()
        for service in ("", SERVICE_NAME):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

    def _reloaded(self, event: ReloadEvent) -> None:
        self.metrics.reloads.labels(event.router, event.outcome).inc()
        if event.outcome == "reloaded":
            self.metrics.serving(event.router, event.new, event.old)

    def reload_soon(self) -> None:
        """Check the routers' version pointers now (SIGHUP), in a task on the serving loop."""
        if self.reloader is not None:
            task = asyncio.get_running_loop().create_task(self.reloader.check())
            self._reload_tasks.add(task)
            task.add_done_callback(self._reload_tasks.discard)

    async def stop(self, grace: float | None = None) -> None:
        """Graceful stop: health NOT_SERVING, refuse new calls, finish in-flight ones, stop workers.

        Between the first two, clients watching health (the gateway's channel) get ``HEALTH_NOTICE_S``
        to stop sending here: a call that reaches a stopping gRPC server is cancelled, not answered."""
        grace = self.config.grace_s if grace is None else grace
        await self.health.enter_graceful_shutdown()
        if self.reloader is not None:
            await self.reloader.stop()
        if grace > 0 and self.plane is not None:
            await asyncio.sleep(min(HEALTH_NOTICE_S, grace))
        await self.grpc.stop(grace)
        if self.plane is not None:
            await self.plane.close(timeout=self.config.grace_s)
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
