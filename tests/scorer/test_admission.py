"""Admission by cost: request limits (bytes, messages, characters, items, tokens), fair queuing per caller."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from ferryman.scorer.v1 import scorer_pb2 as pb
from ferryman.scorer.v1 import scorer_pb2_grpc as pbg
from harness.scorer import SAMPLE_PROMPTS, scorer_in_thread
from scorer.batching import BatchingConfig, FairQueue, MicroBatcher, _Job
from scorer.core import Limits
from scorer.errors import OverloadedError

LIMITS = Limits(max_prompt_chars=20_000, max_messages=100, max_batch_items=50, max_request_cost=5_000)


@pytest.fixture(scope="module")
def address(test_routers_dir: Path) -> Iterator[str]:
    with scorer_in_thread(test_routers_dir, limits=LIMITS, max_score_bytes=64 * 1024) as addr:
        yield addr


def _code(call: object) -> tuple[grpc.StatusCode, str]:
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def test_request_limits_are_invalid_argument_naming_the_limit(address: str) -> None:
    many = pb.Conversation(messages=[pb.ChatMessage() for _ in range(200_000)])  # 400 KB of empty messages
    cases = [
        (pb.ScoreRequest(router="mf", conversation=many), "bytes; the limit is 65,536"),
        (
            pb.ScoreRequest(
                router="mf", conversation=pb.Conversation(messages=[pb.ChatMessage(role="user", content="hi")] * 101)
            ),
            "101 messages; the limit is 100",
        ),
        (pb.ScoreRequest(router="mf", prompt="word " * 5_000), "25000 characters; the limit is 20000"),
    ]
    with grpc.insecure_channel(address) as channel:
        stub = pbg.ScorerServiceStub(channel)
        for request, text in cases:
            code, details = _code(lambda request=request: stub.Score(request, timeout=30))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and text in details, details
        too_many = pb.BatchScoreRequest(requests=[pb.ScoreRequest(router="mf", prompt="hi")] * 51)
        code, details = _code(lambda: stub.BatchScore(too_many, timeout=30))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "51 items; the limit is 50" in details
        # 30 full windows (~264 tokens each) pass 5,000: refused before queuing, with advice.
        heavy = pb.BatchScoreRequest(requests=[pb.ScoreRequest(router="mf", prompt="word " * 2_000)] * 30)
        code, details = _code(lambda: stub.BatchScore(heavy, timeout=30))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "split it" in details, details
        # The scorer still serves.
        assert 0.0 <= stub.Score(pb.ScoreRequest(router="mf", prompt="hi"), timeout=30).strong_win_rate <= 1.0


def test_fair_queue_round_robin_by_cost() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        queue: FairQueue[str] = FairQueue(quantum=100)
        heavy = _Job(["h"] * 6, loop.create_future(), None, "heavy")
        light = _Job(["l"] * 6, loop.create_future(), None, "light")
        queue.push(heavy, [100] * 6)
        queue.push(light, [10] * 6)
        assert queue.caller_cost("heavy") == 600 and queue.cost == 660 and len(queue) == 12
        order = []
        while (entry := queue.pop()) is not None:
            order.append(entry[0].caller[0])
        assert queue.cost == 0 and queue.callers() == 0
        return order

    order = asyncio.run(main())
    # Each turn gives each caller 100: one heavy item (cost 100) per turn, the light caller's
    # six items (cost 10) in its first turn.
    assert "".join(order) == "hllllllhhhhh"


def test_heavy_caller_does_not_starve_a_light_one() -> None:
    """A light caller's items run after at most one batch of a heavy caller's backlog; admission is per caller."""
    order: list[str] = []
    release = threading.Event()

    def score(items: list[str]) -> np.ndarray:
        release.wait(10)
        order.extend(items)
        time.sleep(0.005)
        return np.full(len(items), 0.5)

    async def main() -> None:
        cfg = BatchingConfig(max_batch=8, max_batch_cost=256, workers=1, max_caller_cost=2_600, max_queue_cost=6_000)
        batcher: MicroBatcher[str] = MicroBatcher(score, cfg)
        batcher.start()
        heavy = asyncio.ensure_future(batcher.submit([f"h{i}" for i in range(10)], caller="heavy", costs=[256] * 10))
        await asyncio.sleep(0.05)
        with pytest.raises(OverloadedError, match="for this caller"):
            await batcher.submit(["h-more"] * 2, caller="heavy", costs=[256] * 2)  # its own allowance is full
        lights = [asyncio.ensure_future(batcher.submit([f"l{i}"], caller="light", costs=[20])) for i in range(3)]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(heavy, *lights)
        await batcher.close()

    asyncio.run(main())
    # h0 was running when the light calls came; the next batches alternate callers.
    assert order.index("l0") <= 2 and order.index("l2") <= 3, order
    assert len(order) == 13


def test_two_channels_are_two_callers_over_grpc(test_routers_dir: Path) -> None:
    """One connection's backlog fills its own allowance; another connection is still admitted and answered."""
    cfg = BatchingConfig(max_batch=1, max_batch_cost=64, workers=1, max_caller_cost=300, max_queue_cost=3_000)
    with (
        scorer_in_thread(test_routers_dir, batching=cfg, limits=Limits(max_request_cost=300)) as addr,
        grpc.insecure_channel(addr) as heavy_channel,
        grpc.insecure_channel(addr) as light_channel,
    ):
        heavy = pbg.ScorerServiceStub(heavy_channel)
        light = pbg.ScorerServiceStub(light_channel)
        calls = [heavy.Score.future(pb.ScoreRequest(router="mf", prompt=p * 20), timeout=60) for p in SAMPLE_PROMPTS]
        answer = light.Score(pb.ScoreRequest(router="mf", prompt=SAMPLE_PROMPTS[0]), timeout=60)
        assert 0.0 <= answer.strong_win_rate <= 1.0
        codes = []
        for call in calls:
            try:
                call.result()
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
                assert "for this caller" in (exc.details() or "")
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes and grpc.StatusCode.OK in codes


def test_a_caller_alone_uses_every_worker_but_leaves_one_when_another_is_active() -> None:
    lock = threading.Lock()
    running: list[str] = []
    peak_alone = [0]
    peak_shared = [0]
    other_active = threading.Event()

    def score(items: list[str]) -> np.ndarray:
        with lock:
            running.append(items[0][0])
            heavy_now = running.count("h")
            if other_active.is_set():
                peak_shared[0] = max(peak_shared[0], heavy_now)
            else:
                peak_alone[0] = max(peak_alone[0], heavy_now)
        time.sleep(0.03)
        with lock:
            running.remove(items[0][0])
        return np.full(len(items), 0.5)

    async def main() -> None:
        cfg = BatchingConfig(max_batch=1, max_batch_cost=256, workers=2, share_s=0.5)
        batcher: MicroBatcher[str] = MicroBatcher(score, cfg)
        batcher.start()
        await batcher.submit([f"h{i}" for i in range(8)], caller="heavy", costs=[256] * 8)  # alone: both workers
        heavy = asyncio.ensure_future(batcher.submit([f"h{i}" for i in range(8)], caller="heavy", costs=[256] * 8))
        await asyncio.sleep(0.02)
        other_active.set()
        for i in range(6):  # a light caller, one prompt at a time
            await batcher.submit([f"l{i}"], caller="light", costs=[20])
            await asyncio.sleep(0.01)
        await heavy
        await batcher.close()

    asyncio.run(main())
    assert peak_alone[0] == 2  # alone, the heavy caller had both workers
    assert peak_shared[0] == 1  # with the light caller active, at most one


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_batch_score_work_runs_at_a_lower_cpu_priority() -> None:
    nice: dict[str, int] = {}

    def score(items: list[str]) -> np.ndarray:
        nice[items[0]] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return np.full(len(items), 0.5)

    async def main() -> None:
        batcher: MicroBatcher[str] = MicroBatcher(score, BatchingConfig(max_batch=1, workers=1, bulk_nice=7))
        batcher.start()
        await batcher.submit(["batch-a", "batch-b"], caller="bulk")  # a BatchScore: bulk
        await batcher.submit(["single"], caller="gateway")  # a Score: interactive
        await batcher.close()

    base = os.getpriority(os.PRIO_PROCESS, 0)
    asyncio.run(main())
    assert nice["batch-a"] == min(19, base + 7) and nice["single"] == base
