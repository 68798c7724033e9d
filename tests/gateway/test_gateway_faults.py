"""Provider faults, each survived as specified, with sent / answered / after fallback / clean error / lost.

Real fake providers on loopback, a real gateway, the real openai SDK (and gRPC where said).
Every scenario requires 0 lost; the rows go into the fault table (``make fault-table``).
The scorer is unreachable here, so routed requests use the strong tier's chain:
strong-openai → strong-anthropic → weak-openai → weak-anthropic.
"""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from suite import MESSAGES, ROUTED, grpc_call, grpc_stub, run_sdk, sdk, sdk_call, user

from ferryman.gateway.v1 import gateway_pb2 as pb
from harness.fake_provider import (
    DISCONNECT,
    HTML,
    MALFORMED,
    OK,
    Fault,
    huge,
    shape,
    slow,
    stall,
    status,
    trickle,
)
from harness.faults import CLEAN, Tally, classify_http
from harness.gateway import CLIENT_KEY, PROVIDER_KEY, GatewayThread, gateway_config
from harness.processes import free_port

N = 6
GROUP = "provider"


@pytest.fixture
def gw(fakes):
    config = gateway_config(
        fakes,
        model_overrides={"strong-openai": {"read_timeout_s": 0.3}},
        server={"stream_idle_timeout_s": 1.0},
        limits={"max_response_bytes": 200_000},
    )
    with GatewayThread(config) as g:
        yield g


def row(table, fault: str, tally: Tally, expected: str, via: str = "HTTP (openai SDK)") -> None:
    table.add(GROUP, fault, via, tally, expected)
    assert tally.lost == 0, tally.lost_examples


def test_500_then_ok_is_retried_on_the_same_model(gw, fakes, fault_table):
    for _ in range(N):
        fakes["strong-openai"].program(status(500), OK)
    tally = run_sdk(gw, N, expected="Answer from strong-openai.")
    row(fault_table, "HTTP 500 once per request", tally, "answer from the same model after a retry")
    assert tally.counts()[:4] == (N, N, 0, 0)
    assert fakes["strong-openai"].requests == 2 * N and fakes["strong-anthropic"].requests == 0


def test_429_retry_after_is_honoured(gw, fakes, fault_table):
    fakes["strong-openai"].program(status(429, retry_after="1"))
    started = time.monotonic()
    r = sdk(gw).chat.completions.with_raw_response.create(model=ROUTED, messages=MESSAGES)
    elapsed = time.monotonic() - started
    assert r.headers["x-ferryman-model"] == "strong-openai"
    assert elapsed >= 1.0  # waited for Retry-After, then the same model answered
    assert r.parse().ferryman["attempts"][0]["retries"] == 1
    tally = Tally()
    tally.add("answered")
    row(fault_table, "HTTP 429, Retry-After 1 s", tally, "same model, after waiting 1 s")
    # a Retry-After longer than retry.max_retry_after_s: move on to the next model at once
    for _ in range(N):
        fakes["strong-openai"].program(status(429, retry_after="120"))
    tally = run_sdk(gw, N, expected="Answer from strong-anthropic.")
    row(fault_table, "HTTP 429, Retry-After 120 s (> limit)", tally, "next model at once")
    assert tally.counts()[:4] == (N, N, N, 0)


def test_slow_provider_times_out_then_its_breaker_skips_it(gw, fakes, fault_table):
    fakes["strong-openai"].reset(default=slow(1.0))
    tally = run_sdk(gw, N, expected="Answer from strong-anthropic.")
    row(fault_table, "provider slower than its read timeout", tally, "next model; breaker opens, then skips it")
    assert tally.counts()[:4] == (N, N, N, 0)
    # min_requests=3 requests, each tried once (a read timeout is not retried on the same model),
    # failed there and were served by the next model: 3 of 3 failed ≥ 50 % → open; the other 3
    # requests skip strong-openai at once
    assert fakes["strong-openai"].requests == 3
    assert gw.gateway.resilience.breakers["strong-openai"].state == "open"
    attempts = sdk(gw).chat.completions.create(model=ROUTED, messages=MESSAGES).ferryman["attempts"]
    assert attempts[0]["outcome"] == "breaker_open" and attempts[0]["latency_ms"] < 50


def test_a_hung_model_costs_one_read_timeout_unless_timeouts_are_retried(fakes):
    """A model silent for its read timeout is left at once for the next one (one timeout, not three);
    ``retry.retry_read_timeouts: true`` retries it like any transient fault."""
    for retried, tries in ((False, 1), (True, 3)):
        fakes["strong-openai"].reset(default=slow(1.0))
        fakes["strong-anthropic"].reset()
        config = gateway_config(
            fakes,
            model_overrides={"strong-openai": {"read_timeout_s": 0.3}},
            retry={"max_retries": 2, "base_delay_s": 0.0, "max_delay_s": 0.0, "retry_read_timeouts": retried},
        )
        with GatewayThread(config) as g:
            started = time.monotonic()
            r = sdk(g).chat.completions.with_raw_response.create(model=ROUTED, messages=MESSAGES)
            elapsed = time.monotonic() - started
        assert r.headers["x-ferryman-model"] == "strong-anthropic"
        first = r.parse().ferryman["attempts"][0]
        assert (first["model"], first["outcome"], first["retries"]) == ("strong-openai", "transient_error", tries - 1)
        assert fakes["strong-openai"].requests == tries
        assert elapsed >= 0.3 * tries


def test_connection_refused_falls_back(fakes, fault_table):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with GatewayThread(gateway_config(fakes, model_overrides={"strong-openai": {"base_url": dead}})) as gw:
        tally = run_sdk(gw, N, expected="Answer from strong-anthropic.")
    row(fault_table, "connection refused", tally, "next model")
    assert tally.counts()[:4] == (N, N, N, 0)


EVERY_EVENT = -1  # a shape fault from the first stream event on: the stream fails before its first token
STRINGS = {"prompt_tokens": "12", "completion_tokens": "x", "input_tokens": "12", "output_tokens": "x"}


@pytest.mark.parametrize(
    ("name", "openai_fault", "anthropic_fault"),
    [
        ("malformed JSON", MALFORMED, MALFORMED),
        ("HTML error page (HTTP 502)", HTML, HTML),
        (
            "usage counts as strings",
            shape({"usage": STRINGS}, EVERY_EVENT),
            shape({"usage": STRINGS, "message": {"usage": STRINGS}}, EVERY_EVENT),
        ),
        (
            "choices / content blocks not a list",
            shape({"choices": {"0": "no"}}, EVERY_EVENT),
            shape({"content": {"0": "no"}, "delta": []}, EVERY_EVENT),
        ),
        (
            "message / delta / text of the wrong type",
            shape({"choices": [{"index": 0, "message": "hi", "delta": "hi"}]}, EVERY_EVENT),
            shape({"content": [{"type": "text", "text": 7}], "delta": {"text": 7}}, EVERY_EVENT),
        ),
        ("answer over limits.max_response_bytes", huge(1_000_000), huge(1_000_000)),
    ],
)
def test_malformed_answers_are_provider_faults(gw, fakes, fault_table, name, openai_fault, anthropic_fault):
    """The issue's defect 2 (wrong-shaped JSON was an HTTP 500 / INTERNAL): now the next model."""
    fakes["strong-openai"].reset(default=openai_fault)
    fakes["strong-anthropic"].reset(default=anthropic_fault)
    tally = run_sdk(gw, N, expected="Answer from weak-openai.")
    row(fault_table, f"{name}, both strong models", tally, "weak tier (each a provider fault)")
    assert tally.counts()[:4] == (N, N, N, 0)
    channel, stub = grpc_stub(gw)
    with channel:
        grpc_tally = Tally()
        for i in range(N):
            request = pb.ChatCompletionRequest(model=ROUTED, messages=user("hello"))
            outcome, text = grpc_call(stub, request, stream=i % 2 == 1)
            grpc_tally.add(outcome, text)
            assert text == "Answer from weak-openai."
    row(fault_table, f"{name}, both strong models", grpc_tally, "weak tier", via="gRPC")
    assert grpc_tally.counts()[:4] == (N, N, N, 0)


def _raw_stream(gw: GatewayThread, model: str = ROUTED) -> httpx.Response:
    body = {"model": model, "messages": MESSAGES, "stream": True}
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    return httpx.post(gw.http_url + "/v1/chat/completions", json=body, headers=headers, timeout=20)


@pytest.mark.parametrize(
    ("name", "fault", "code"),
    [
        ("connection dropped", DISCONNECT, "stream_interrupted"),
        (
            "wrong-shaped chunk",
            shape({"choices": [{"index": 0, "delta": "oops"}]}, after_chunks=2),
            "stream_interrupted",
        ),
        ("stream grows over limits.max_response_bytes", huge(1_000_000, chunks=20), "stream_interrupted"),
        ("stalls longer than the idle timeout", stall(3.0), "stream_stalled"),
    ],
)
def test_fault_after_the_first_token_ends_the_stream_with_an_error_event(gw, fakes, fault_table, name, fault, code):
    """No fallback after the first token: an explicit error event ends the stream (no [DONE]). Each is the
    model's failure, so after min_requests (3) its breaker opens and later streams start on the next model."""
    fakes["strong-openai"].reset(default=fault)
    tally = Tally()
    raw = _raw_stream(gw)
    last = raw.text.strip().splitlines()[-1]
    assert f'"code":"{code}"' in last and "[DONE]" not in raw.text, last
    tally.add(*classify_http(raw.status_code, raw.headers, raw.content, stream=True))
    client = sdk(gw)
    for i in range(1, N):
        outcome, detail = sdk_call(client, stream=True)
        tally.add(outcome, detail)
        if i < 3:
            assert outcome == CLEAN and "stream" in detail.lower(), detail
        else:
            assert detail == "Answer from strong-anthropic."
    expected = f"error event `{code}`; from the 4th on the breaker is open: next model"
    row(fault_table, f"mid-stream: {name}", tally, expected)
    assert tally.counts()[:4] == (N, N - 3, N - 3, 3)


def test_stream_longer_than_the_request_deadline_ends_with_a_timeout_event(fakes, fault_table):
    """The issue's defect 3: request_timeout_s bounded only the first token."""
    fakes["strong-openai"].reset(default=trickle(0.3))  # 8 chunks: 2.4 s
    # a request must outlive a Score at its deadline plus a connect attempt at its timeout (gateway.config)
    config = gateway_config(
        fakes,
        model_overrides={name: {"connect_timeout_s": 0.5} for name in fakes},
        scorer={"deadline_ms": 250},
        server={"request_timeout_s": 1.0, "stream_idle_timeout_s": 5.0},
    )
    with GatewayThread(config) as gw:
        started = time.monotonic()
        last = _raw_stream(gw).text.strip().splitlines()[-1]
        assert '"code":"timeout"' in last and time.monotonic() - started < 1.6, last
        tally = Tally()
        for _ in range(4):
            outcome, detail = sdk_call(sdk(gw), stream=True)
            tally.add(outcome, detail)
        channel, stub = grpc_stub(gw)
        with channel:
            outcome, detail = grpc_call(stub, pb.ChatCompletionRequest(model=ROUTED, messages=user("hi")), stream=True)
            assert detail.startswith("DEADLINE_EXCEEDED")
    row(fault_table, "stream longer than request_timeout_s", tally, "error event `timeout` at the deadline")
    assert tally.clean_error == 4


def test_disconnect_before_the_first_token_falls_back(gw, fakes, fault_table):
    fakes["strong-openai"].reset(default=Fault("disconnect", after_chunks=0))
    tally = Tally()
    client = sdk(gw)
    for _ in range(N):
        tally.add(*sdk_call(client, stream=True, expected="Answer from strong-anthropic."))
    row(fault_table, "connection dropped before the first token", tally, "next model")
    assert tally.counts()[:4] == (N, N, N, 0)


def test_whole_strong_tier_down_falls_to_the_weak_tier(gw, fakes, fault_table):
    fakes["strong-openai"].reset(default=status(503))
    fakes["strong-anthropic"].reset(default=status(500))
    tally = run_sdk(gw, N, expected="Answer from weak-openai.")
    row(fault_table, "strong tier down (503 / 500)", tally, "weak tier")
    assert tally.counts()[:4] == (N, N, N, 0)


def test_everything_down_fails_cleanly(gw, fakes, fault_table):
    for fake in fakes.values():
        fake.reset(default=status(500))
    tally = run_sdk(gw, N)
    row(fault_table, "every model down", tally, "503 `upstream_unavailable`")
    assert tally.clean_error == N
    with pytest.raises(openai.InternalServerError) as info:
        sdk(gw).chat.completions.create(model=ROUTED, messages=MESSAGES)
    assert info.value.status_code == 503 and "no model could serve" in info.value.message


def test_passthrough_has_no_fallback(gw, fakes, fault_table):
    fakes["weak-anthropic"].reset(default=status(500))
    tally = run_sdk(gw, N, model="weak-anthropic")
    row(fault_table, "passthrough model down", tally, "503 (no fallback by design)")
    assert tally.clean_error == N


def test_provider_400_is_returned_and_never_trips_the_breaker(gw, fakes, fault_table):
    fakes["strong-openai"].reset(default=status(400))
    tally = Tally()
    for _ in range(5):
        with pytest.raises(openai.BadRequestError) as info:
            sdk(gw).chat.completions.create(model=ROUTED, messages=MESSAGES)
        tally.add(CLEAN)
        assert "fake error 400" in info.value.message
    assert fakes["strong-openai"].requests == 5  # not retried
    assert fakes["strong-anthropic"].requests == 0  # the request is at fault: no fallback
    assert gw.gateway.resilience.breakers["strong-openai"].state == "closed"
    row(fault_table, "provider 400 (the request is at fault)", tally, "400 relayed (sanitised), no retry")


def test_relayed_provider_messages_are_sanitised(gw, fakes):
    """The issue's defect 8: only the exact key was redacted from relayed provider 4xx messages."""
    leaky = (
        f"Incorrect API key provided: sk-abc***************wxyz. Also {PROVIDER_KEY}, Bearer eyJhbGciOiJIUzI1NiJ9.x "
        "see https://10.0.3.7:8443/internal/v1?token=abc from 10.0.3.7 user ops@corp.example\x1b[31m"
    )
    fakes["strong-openai"].reset(default=status(422, message=leaky))
    with pytest.raises(openai.BadRequestError) as info:  # provider 4xx: 400 provider_rejected
        sdk(gw).chat.completions.create(model=ROUTED, messages=MESSAGES)
    message = info.value.message
    for leak in ("sk-abc", "wxyz", PROVIDER_KEY, "eyJhbGci", "10.0.3.7", "internal/v1", "ops@corp", "\x1b"):
        assert leak not in message, (leak, message)
    assert "Incorrect API key provided" in message


def test_provider_rejecting_the_gateways_key_moves_on(gw, fakes, fault_table):
    fakes["strong-openai"].reset(default=status(401))
    tally = run_sdk(gw, N, expected="Answer from strong-anthropic.")
    row(fault_table, "provider rejects the gateway's key (401)", tally, "next model (operator's problem)")
    assert tally.counts()[:4] == (N, N, N, 0)
    assert gw.gateway.resilience.breakers["strong-openai"].state == "closed"


def test_missing_provider_key_names_the_variable_and_falls_back(fakes, fault_table):
    overrides = {"strong-openai": {"api_key_env": "FERRYMAN_TEST_UNSET_KEY"}}
    with GatewayThread(gateway_config(fakes, model_overrides=overrides)) as gw:
        result = sdk(gw).chat.completions.create(model=ROUTED, messages=MESSAGES)
        first = result.ferryman["attempts"][0]
        assert first["outcome"] == "client_error"
        assert "FERRYMAN_TEST_UNSET_KEY" in first["error"]
        assert result.choices[0].message.content == "Answer from strong-anthropic."
        tally = run_sdk(gw, N, expected="Answer from strong-anthropic.")
        with pytest.raises(openai.InternalServerError) as info:
            sdk(gw).chat.completions.create(model="strong-openai", messages=MESSAGES)
        assert "environment variable FERRYMAN_TEST_UNSET_KEY" in info.value.message
    assert fakes["strong-openai"].requests == 0
    row(fault_table, "provider key not configured", tally, "next model; the log names the variable")


def test_request_deadline_bounds_retries_and_fallback(fakes, fault_table):
    for fake in fakes.values():
        fake.reset(default=slow(1.5))
    tally = Tally()
    with GatewayThread(gateway_config(fakes)) as gw:
        channel, stub = grpc_stub(gw)
        with channel:
            for stream in (False, True):
                started = time.monotonic()
                request = pb.ChatCompletionRequest(model=ROUTED, messages=user("hi"))
                outcome, detail = grpc_call(stub, request, stream=stream, timeout=0.5)
                tally.add(outcome, detail)
                assert detail.startswith("DEADLINE_EXCEEDED") and time.monotonic() - started < 1.0, detail
    row(fault_table, "client deadline 0.5 s, every provider slow", tally, "DEADLINE_EXCEEDED in time", via="gRPC")


def test_anthropic_disconnect_mid_stream_ends_with_an_error_event(gw, fakes):
    fakes["strong-anthropic"].reset(default=DISCONNECT)
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in sdk(gw).chat.completions.create(model="strong-anthropic", messages=MESSAGES, stream=True):
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Answer from " and "after the stream started" in str(info.value)
    # before the first token there is still a fallback: strong-openai fails, strong-anthropic drops, weak answers
    fakes["strong-openai"].reset(default=status(500))
    fakes["strong-anthropic"].reset(default=Fault("disconnect", after_chunks=0))
    reply = sdk(gw).chat.completions.with_raw_response.create(model=ROUTED, messages=MESSAGES, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in reply.parse() if c.choices) == "Answer from weak-openai."
    assert reply.headers["x-ferryman-fallbacks"] == "2" and reply.headers["x-ferryman-served-tier"] == "weak"


def test_scorer_unreachable_uses_the_default_tier(gw, fakes, fault_table):
    tally = run_sdk(gw, N, model="ferryman-balanced", expected="Answer from strong-openai.")
    row(fault_table, "scorer unreachable", tally, "the policy's default tier, at once")
    assert tally.counts()[:4] == (N, N, 0, 0)
