"""The gRPC service in-process over a real loopback channel: values, batch = one-by-one, status codes, health."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ferryman.scorer.v1 import scorer_pb2 as pb
from ferryman.scorer.v1 import scorer_pb2_grpc as pbg
from harness.scorer import SAMPLE_PROMPTS, STRONG, WEAK, config_for_tests, scorer_in_thread
from scorer.batching import BatchingConfig, MicroBatcher
from scorer.core import Limits
from scorer.errors import DeadlineExceededError, OverloadedError, ShuttingDownError
from scorer.routers import ROUTER_KINDS
from scorer.server import SERVICE_NAME, ScorerServer

ROUTERS = ("mf", "sw", "bert", "random")


@pytest.fixture(scope="module")
def stub(test_routers_dir: Path) -> Iterator[pbg.ScorerServiceStub]:
    limits = Limits(max_prompt_chars=5000, max_batch_items=100)
    with scorer_in_thread(test_routers_dir, limits=limits) as address, grpc.insecure_channel(address) as channel:
        yield pbg.ScorerServiceStub(channel)


@pytest.mark.parametrize("router", ROUTERS)
def test_scores_in_unit_interval_and_differ(stub: pbg.ScorerServiceStub, router: str) -> None:
    out = [stub.Score(pb.ScoreRequest(router=router, prompt=p), timeout=30) for p in SAMPLE_PROMPTS[:20]]
    rates = [r.strong_win_rate for r in out]
    assert all(0.0 <= r <= 1.0 for r in rates)
    assert len({round(r, 9) for r in rates}) >= 10
    assert {(r.router, r.router_version, r.strong_model, r.weak_model) for r in out} == {
        (router, "test-1", STRONG, WEAK)
    }


def test_batch_score_equals_one_by_one(stub: pbg.ScorerServiceStub) -> None:
    requests = [pb.ScoreRequest(router=r, prompt=p) for p in SAMPLE_PROMPTS[:12] for r in ROUTERS]
    requests.append(pb.ScoreRequest(router="mf", prompt=SAMPLE_PROMPTS[0], weak_model="claude-2.1"))
    conv = pb.Conversation(
        messages=[pb.ChatMessage(role="user", content="hi"), pb.ChatMessage(role="user", content="x")]
    )
    requests.append(pb.ScoreRequest(router="sw", conversation=conv))
    batch = stub.BatchScore(pb.BatchScoreRequest(requests=requests), timeout=60).responses
    single = [stub.Score(r, timeout=30) for r in requests]
    assert [b.router for b in batch] == [s.router for s in single]
    assert [b.weak_model for b in batch] == [s.weak_model for s in single]
    np.testing.assert_allclose([b.strong_win_rate for b in batch], [s.strong_win_rate for s in single], atol=1e-9)


def test_concurrent_scores_equal_sequential(test_routers_dir: Path, stub: pbg.ScorerServiceStub) -> None:
    requests = [pb.ScoreRequest(router=ROUTERS[i % 4], prompt=p) for i, p in enumerate(SAMPLE_PROMPTS)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        parallel = list(pool.map(lambda r: stub.Score(r, timeout=60).strong_win_rate, requests))
    sequential = [stub.Score(r, timeout=30).strong_win_rate for r in requests]
    np.testing.assert_allclose(parallel, sequential, atol=1e-9)


def test_list_routers(stub: pbg.ScorerServiceStub) -> None:
    routers = {r.name: r for r in stub.ListRouters(pb.ListRoutersRequest(), timeout=10).routers}
    assert sorted(routers) == sorted(ROUTER_KINDS)  # one test router of every kind
    mf = routers["mf"]
    assert mf.type == pb.ROUTER_TYPE_MF and mf.encoder == "all-MiniLM-L6-v2"
    assert (mf.default_strong_model, mf.default_weak_model) == (STRONG, WEAK)
    assert list(mf.models)[:2] == [STRONG, WEAK]
    shares = [p.strong_share for p in mf.calibration]
    assert shares == sorted(shares) and len(shares) >= 2
    assert routers["bert"].type == pb.ROUTER_TYPE_BERT and list(routers["bert"].models) == [STRONG, WEAK]
    assert routers["random"].encoder == ""


@pytest.mark.parametrize(
    ("request_", "code", "text"),
    [
        (pb.ScoreRequest(router="mf", prompt=""), grpc.StatusCode.INVALID_ARGUMENT, "empty"),
        (pb.ScoreRequest(router="mf"), grpc.StatusCode.INVALID_ARGUMENT, "empty"),
        (pb.ScoreRequest(router="knn", prompt="hi"), grpc.StatusCode.NOT_FOUND, "loaded routers"),
        (pb.ScoreRequest(prompt="hi"), grpc.StatusCode.INVALID_ARGUMENT, "router is required"),
        (
            pb.ScoreRequest(router="sw", prompt="hi", strong_model="gpt-5"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "known models: gpt-4-1106-preview, mistralai/Mixtral-8x7B-Instruct-v0.1",
        ),
        (pb.ScoreRequest(router="mf", prompt="y" * 5001), grpc.StatusCode.INVALID_ARGUMENT, "limit is 5000"),
        (
            pb.ScoreRequest(router="mf", conversation=pb.Conversation(messages=[pb.ChatMessage(role="system")])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "no user turn",
        ),
        (pb.ScoreRequest(router="mf", prompt="hi", turn_selection=9), grpc.StatusCode.INVALID_ARGUMENT, "turn_sel"),
    ],
)
def test_bad_input_status(
    stub: pbg.ScorerServiceStub, request_: pb.ScoreRequest, code: grpc.StatusCode, text: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(request_, timeout=10)
    assert err.value.code() == code
    assert text in err.value.details()


def test_bad_batch_status(stub: pbg.ScorerServiceStub) -> None:
    ok = pb.ScoreRequest(router="mf", prompt="hi")
    cases = [
        ([], grpc.StatusCode.INVALID_ARGUMENT, "no requests"),
        ([ok] * 101, grpc.StatusCode.INVALID_ARGUMENT, "limit is 100"),
        ([ok, pb.ScoreRequest(router="zz", prompt="a")], grpc.StatusCode.NOT_FOUND, "requests[1]"),
    ]
    for items, code, text in cases:
        with pytest.raises(grpc.RpcError) as err:
            stub.BatchScore(pb.BatchScoreRequest(requests=items), timeout=10)
        assert err.value.code() == code and text in err.value.details()


def test_overload_is_resource_exhausted(test_routers_dir: Path) -> None:
    # One channel is one caller: it may have two short prompts (cost ~20 each) queued, not more.
    tiny = BatchingConfig(max_batch=1, max_queue_cost=50, max_caller_cost=50, workers=1, max_wait_s=0)
    with (
        scorer_in_thread(test_routers_dir, batching=tiny, limits=Limits(max_request_cost=50)) as address,
        grpc.insecure_channel(address) as channel,
    ):
        stub = pbg.ScorerServiceStub(channel)
        calls = [stub.Score.future(pb.ScoreRequest(router="sw", prompt=p), timeout=60) for p in SAMPLE_PROMPTS * 2]
        codes = []
        for call in calls:
            try:
                call.result()
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
                if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    assert "overloaded" in (exc.details() or "")
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}


def test_deadline_exceeded_status(stub: pbg.ScorerServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.BatchScore(
            pb.BatchScoreRequest(requests=[pb.ScoreRequest(router="bert", prompt="x " * 200)] * 100), timeout=0.001
        )
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_expired_items_dropped_before_inference() -> None:
    """Server-side half of deadlines: the batcher never runs an item whose deadline passed while queued."""
    release = threading.Event()
    seen: list[str] = []

    def score(items: list[str]) -> np.ndarray:
        seen.extend(items)
        release.wait(10)
        return np.full(len(items), 0.5)

    async def main() -> None:
        cfg = BatchingConfig(max_batch=1, workers=1, max_queue_cost=3, max_caller_cost=3)
        batcher: MicroBatcher[str] = MicroBatcher(score, cfg)
        batcher.start()
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(batcher.submit(["first"]))
        await asyncio.sleep(0.05)  # "first" now occupies the only worker
        late = asyncio.ensure_future(batcher.submit(["late"], deadline=loop.time() + 0.05))
        queued = asyncio.ensure_future(batcher.submit(["queued"]))
        await asyncio.sleep(0)  # let both tasks enqueue
        with pytest.raises(OverloadedError):
            await batcher.submit(["a", "b"])  # queue holds 2 of 3: two more do not fit
        await asyncio.sleep(0.1)
        release.set()
        assert (await first)[0] == 0.5 and (await queued)[0] == 0.5
        with pytest.raises(DeadlineExceededError):
            await late
        await batcher.close()
        with pytest.raises(ShuttingDownError):
            await batcher.submit(["after close"])

    asyncio.run(main())
    assert seen == ["first", "queued"]


def test_batcher_leaves_a_share_for_the_busy_worker() -> None:
    """A free worker takes ``queue / workers`` items, not the whole queue while the other worker is busy."""
    sizes: list[int] = []

    def score(items: list[int]) -> np.ndarray:
        time.sleep(0.05)
        return np.asarray(items, dtype=np.float64) * 2

    async def main() -> list[np.ndarray]:
        cfg = BatchingConfig(max_batch=64, workers=2, max_wait_s=0.005)
        batcher: MicroBatcher[int] = MicroBatcher(score, cfg, on_batch=sizes.append)
        batcher.start()
        out = await asyncio.gather(*(batcher.submit([i]) for i in range(12)))
        await batcher.close()
        return out

    results = asyncio.run(main())
    assert [float(r[0]) for r in results] == [2.0 * i for i in range(12)]
    # 12 queued: the first worker takes 6; the second, while the first runs, half of the 6 left;
    # the other 3 wait for whichever worker frees first instead of joining a running batch.
    assert sizes[:2] == [6, 3] and sum(sizes) == 12


def test_unexpected_error_is_generic_internal(test_routers_dir: Path) -> None:
    async def main() -> None:
        server = ScorerServer(config_for_tests(test_routers_dir, routers=("random",)))
        port = await server.start()
        await server.load()
        assert server.core is not None
        router = server.core.routers["random"]

        def boom(*args: object) -> np.ndarray:
            raise RuntimeError("secret path /etc/x in a traceback")

        router.score = boom  # type: ignore[method-assign]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await pbg.ScorerServiceStub(channel).Score(pb.ScoreRequest(router="random", prompt="hi"), timeout=10)
        await server.stop(0)
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert err.value.details() == "internal error"
        metrics = server.metrics.registry.get_sample_value(
            "ferryman_scorer_requests_total", {"method": "Score", "router": "random", "code": "INTERNAL"}
        )
        assert metrics == 1.0

    asyncio.run(main())


def test_health_not_serving_until_loaded_then_serving(test_routers_dir: Path) -> None:
    async def main() -> None:
        server = ScorerServer(config_for_tests(test_routers_dir))
        port = await server.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            scorer = pbg.ScorerServiceStub(channel)
            for service in ("", SERVICE_NAME):
                res = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                assert res.status == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await scorer.Score(pb.ScoreRequest(router="mf", prompt="hi"), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            await server.load()
            for service in ("", SERVICE_NAME):
                res = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                assert res.status == health_pb2.HealthCheckResponse.SERVING
            started = time.perf_counter()
            await scorer.Score(pb.ScoreRequest(router="mf", prompt="hi"), timeout=5)
            assert time.perf_counter() - started < 5
            text = server.metrics.registry.get_sample_value("ferryman_scorer_batch_size_count")
            assert text is not None and text >= 1
        await server.stop(0)

    asyncio.run(main())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_prometheus_metrics_over_http(test_routers_dir: Path) -> None:
    metrics_port = _free_port()

    async def main() -> str:
        server = ScorerServer(config_for_tests(test_routers_dir, routers=("mf",), metrics_port=metrics_port))
        port = await server.start()
        await server.load()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pbg.ScorerServiceStub(channel)
            await stub.Score(pb.ScoreRequest(router="mf", prompt="hi"), timeout=10)
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Score(pb.ScoreRequest(router="mf", prompt=""), timeout=10)
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Score(pb.ScoreRequest(router="x" * 50, prompt="hi"), timeout=10)
        text = await asyncio.to_thread(lambda: httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text)
        await server.stop(0)
        return text

    text = asyncio.run(main())
    assert 'ferryman_scorer_requests_total{code="OK",method="Score",router="mf"} 1.0' in text
    assert 'ferryman_scorer_requests_total{code="INVALID_ARGUMENT",method="Score",router="mf"} 1.0' in text
    assert 'ferryman_scorer_requests_total{code="NOT_FOUND",method="Score",router="unknown"} 1.0' in text
    assert "x" * 50 not in text  # client-chosen names never become label values
    assert "ferryman_scorer_queue_depth 0.0" in text and "ferryman_scorer_queued_cost 0.0" in text
    assert "ferryman_scorer_batch_size_count 1.0" in text
    assert 'ferryman_scorer_full_window_seconds{router="mf"}' in text
    assert 'ferryman_scorer_latency_seconds_count{method="Score",router="mf"} 2.0' in text
