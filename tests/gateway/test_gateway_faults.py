"""Every provider fault the issue names, survived as specified, with counts.

A routed request whose scorer is down goes to the strong tier, so its chain is
strong-openai → strong-anthropic → weak-openai → weak-anthropic. Each scenario sends the
same number of requests (half whole, half streamed, through the openai SDK) and counts
sent / answered / answered after fallback / failed; run with ``-s`` to see the table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
import openai
import pytest

from gateway.breakers import Breaker
from harness.fake_provider import DISCONNECT, MALFORMED, OK, FakeProvider, Fault, slow, status
from harness.gateway import CLIENT_KEY, GatewayThread, gateway_config
from harness.processes import free_port

ROUTED = "router-random-0.0"  # scorer unreachable in these tests → the strong tier
MESSAGES = [{"role": "user", "content": "Explain circuit breakers."}]
N = 6


@dataclass
class Tally:
    sent: int = 0
    answered: int = 0
    after_fallback: int = 0
    failed: int = 0

    def row(self, name: str) -> str:
        counts = f"sent={self.sent:<3} answered={self.answered:<3} after_fallback={self.after_fallback:<3}"
        return f"{name:<48} {counts} failed={self.failed}"


def client(gw: GatewayThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.http_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20)


def run_requests(gw: GatewayThread, expected_text: str | None, model: str = ROUTED, n: int = N) -> Tally:
    """Half whole, half streamed; a request counts as answered only with the complete text."""
    tally = Tally()
    c = client(gw)
    for i in range(n):
        tally.sent += 1
        try:
            if i % 2 == 0:
                raw = c.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
                text = raw.parse().choices[0].message.content
            else:
                raw = c.chat.completions.with_raw_response.create(model=model, messages=MESSAGES, stream=True)
                text = "".join(ch.choices[0].delta.content or "" for ch in raw.parse() if ch.choices)
        except openai.APIError:
            tally.failed += 1
            continue
        assert expected_text is None or text == expected_text
        tally.answered += 1
        if int(raw.headers["x-ferryman-fallbacks"]) > 0:
            tally.after_fallback += 1
    return tally


@pytest.fixture
def gw(fakes):
    with GatewayThread(gateway_config(fakes, model_overrides={"strong-openai": {"read_timeout_s": 0.3}})) as g:
        yield g


def report(name: str, tally: Tally) -> None:
    print("\n" + tally.row(name))


def test_500_then_ok_is_retried_on_the_same_model(gw, fakes):
    for _ in range(N):
        fakes["strong-openai"].program(status(500), OK)
    tally = run_requests(gw, "Answer from strong-openai.")
    report("HTTP 500 once per request (retry)", tally)
    assert (tally.answered, tally.after_fallback, tally.failed) == (N, 0, 0)
    assert fakes["strong-openai"].requests == 2 * N
    assert fakes["strong-anthropic"].requests == 0


def test_429_retry_after_is_honoured(gw, fakes):
    fakes["strong-openai"].program(status(429, retry_after="1"))
    started = time.monotonic()
    r = client(gw).chat.completions.with_raw_response.create(model=ROUTED, messages=MESSAGES)
    elapsed = time.monotonic() - started
    assert r.headers["x-ferryman-model"] == "strong-openai"
    assert elapsed >= 1.0  # waited for Retry-After, then the same model answered
    assert r.parse().ferryman["attempts"][0]["retries"] == 1
    report(f"HTTP 429, Retry-After 1 s (waited {elapsed:.2f} s, same model)", Tally(1, 1, 0, 0))
    # a Retry-After longer than retry.max_retry_after_s: move on to the next model at once
    for _ in range(N):
        fakes["strong-openai"].program(status(429, retry_after="120"))
    tally = run_requests(gw, "Answer from strong-anthropic.")
    report("HTTP 429, Retry-After 120 s (> limit: fallback)", tally)
    assert (tally.answered, tally.after_fallback, tally.failed) == (N, N, 0)


def test_slow_provider_times_out_then_breaker_skips_it(gw, fakes):
    fakes["strong-openai"].reset(default=slow(1.0))
    tally = run_requests(gw, "Answer from strong-anthropic.")
    report("slow provider (1 s > 0.3 s read timeout)", tally)
    assert (tally.answered, tally.after_fallback, tally.failed) == (N, N, 0)
    # fail_max=3: the first request's 3 timed-out tries open the breaker; later ones skip it
    assert fakes["strong-openai"].requests == 3
    assert gw.gateway.resilience.breakers["strong-openai"].state == "open"
    attempts = client(gw).chat.completions.create(model=ROUTED, messages=MESSAGES).ferryman["attempts"]
    assert attempts[0]["outcome"] == "breaker_open" and attempts[0]["latency_ms"] < 50


def test_connection_refused_falls_back(fakes):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    config = gateway_config(fakes, model_overrides={"strong-openai": {"base_url": dead}})
    with GatewayThread(config) as gw:
        tally = run_requests(gw, "Answer from strong-anthropic.")
    report("connection refused", tally)
    assert (tally.answered, tally.after_fallback, tally.failed) == (N, N, 0)


def test_malformed_json_falls_back(gw, fakes):
    fakes["strong-openai"].reset(default=MALFORMED)
    fakes["strong-anthropic"].reset(default=MALFORMED)
    tally = run_requests(gw, "Answer from weak-openai.")
    report("malformed JSON from both strong models", tally)
    assert (tally.answered, tally.after_fallback, tally.failed) == (N, N, 0)
    r = client(gw).chat.completions.with_raw_response.create(model=ROUTED, messages=MESSAGES)
    assert r.headers["x-ferryman-served-tier"] == "weak" and r.headers["x-ferryman-degraded"] == "true"


def test_disconnect_before_first_token_falls_back(gw, fakes):
    fakes["strong-openai"].reset(default=Fault("disconnect", after_chunks=0))
    tally = run_requests(gw, None)
    report("disconnect before the first token", tally)
    assert (tally.answered, tally.failed) == (N, 0)
    # request 0 (whole answer) is served by strong-openai; request 1 (a stream) fails 3 times
    # before its first token, opens the breaker and falls back; every later one skips it
    assert tally.after_fallback == N - 1
    assert gw.gateway.resilience.breakers["strong-openai"].state == "open"


def test_disconnect_mid_stream_ends_with_an_error_event(gw, fakes):
    fakes["strong-openai"].reset(default=DISCONNECT)
    tally = Tally(sent=1, failed=1)
    # the raw SSE: two content chunks, then an error event and no [DONE]
    body = httpx.post(
        gw.http_url + "/v1/chat/completions",
        json={"model": ROUTED, "messages": MESSAGES, "stream": True},
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
    ).text
    assert '"code":"stream_interrupted"' in body.strip().splitlines()[-1] and "[DONE]" not in body
    c = client(gw)
    for _ in range(2):  # fail_max=3: the third interrupted stream opens the breaker
        tally.sent += 1
        received = []
        with pytest.raises(openai.APIError) as info:
            for chunk in c.chat.completions.create(model=ROUTED, messages=MESSAGES, stream=True):
                if chunk.choices:
                    received.append(chunk.choices[0].delta.content or "")
        assert "".join(received) == "Answer from "  # two words arrived, then an explicit error
        assert "after the stream started" in str(info.value)
        tally.failed += 1
    report("disconnect mid-stream (no fallback possible)", tally)
    assert gw.gateway.resilience.breakers["strong-openai"].state == "open"


def test_whole_strong_tier_down_falls_to_weak_tier(gw, fakes):
    fakes["strong-openai"].reset(default=status(503))
    fakes["strong-anthropic"].reset(default=status(500))
    tally = run_requests(gw, "Answer from weak-openai.")
    report("strong tier down (503/500): other tier", tally)
    assert (tally.answered, tally.after_fallback, tally.failed) == (N, N, 0)


def test_everything_down_fails_cleanly(gw, fakes):
    for fake in fakes.values():
        fake.reset(default=status(500))
    tally = run_requests(gw, None)
    report("every model down (nothing to fall back to)", tally)
    assert (tally.answered, tally.failed) == (0, N)
    with pytest.raises(openai.InternalServerError) as info:
        client(gw).chat.completions.create(model=ROUTED, messages=MESSAGES)
    assert info.value.status_code == 503 and "no model could serve" in info.value.message


def test_passthrough_has_no_fallback(gw, fakes):
    fakes["weak-anthropic"].reset(default=status(500))
    tally = run_requests(gw, None, model="weak-anthropic")
    report("passthrough model down (no fallback by design)", tally)
    assert (tally.answered, tally.failed) == (0, N)


def test_provider_400_is_returned_and_never_trips_the_breaker(gw, fakes):
    fakes["strong-openai"].reset(default=status(400))
    for _ in range(5):
        with pytest.raises(openai.BadRequestError) as info:
            client(gw).chat.completions.create(model=ROUTED, messages=MESSAGES)
        assert "fake error 400" in info.value.message
    assert fakes["strong-openai"].requests == 5  # not retried
    assert fakes["strong-anthropic"].requests == 0  # the request is at fault: no fallback
    assert gw.gateway.resilience.breakers["strong-openai"].state == "closed"


def test_missing_provider_key_names_the_variable_and_falls_back(fakes):
    overrides = {"strong-openai": {"api_key_env": "FERRYMAN_TEST_UNSET_KEY"}}
    with GatewayThread(gateway_config(fakes, model_overrides=overrides)) as gw:
        result = client(gw).chat.completions.create(model=ROUTED, messages=MESSAGES)
        first = result.ferryman["attempts"][0]
        assert first["outcome"] == "client_error"
        assert "FERRYMAN_TEST_UNSET_KEY" in first["error"]
        assert result.choices[0].message.content == "Answer from strong-anthropic."
        with pytest.raises(openai.InternalServerError) as info:
            client(gw).chat.completions.create(model="strong-openai", messages=MESSAGES)
        assert "environment variable FERRYMAN_TEST_UNSET_KEY" in info.value.message
    assert fakes["strong-openai"].requests == 0


def _trip_strong_openai(gw: GatewayThread, fakes: dict[str, FakeProvider]) -> Breaker:
    """Make strong-openai fail until its breaker opens (one routed request); its breaker."""
    breaker = gw.gateway.resilience.breakers["strong-openai"]
    fakes["strong-openai"].reset(default=status(500))
    client(gw).chat.completions.create(model=ROUTED, messages=MESSAGES)
    assert breaker.state == "open"
    return breaker


def test_breaker_half_opens_after_the_reset_timeout_and_closes_on_success(fakes):
    config = gateway_config(fakes, breaker={"fail_max": 3, "reset_timeout_s": 1.0})
    with GatewayThread(config) as gw:
        breaker = _trip_strong_openai(gw, fakes)
        skipped = client(gw).chat.completions.create(model=ROUTED, messages=MESSAGES)
        assert skipped.ferryman["attempts"][0]["outcome"] == "breaker_open"
        time.sleep(1.1)
        fakes["strong-openai"].reset()  # recovered
        trial = client(gw).chat.completions.create(model=ROUTED, messages=MESSAGES)
        assert trial.choices[0].message.content == "Answer from strong-openai."
        assert breaker.state == "closed"
        # a failed trial call re-opens it at once
        fakes["strong-openai"].reset(default=status(500))
        client(gw).chat.completions.create(model=ROUTED, messages=MESSAGES)
        assert breaker.state == "open"
        time.sleep(1.1)
        fakes["strong-openai"].program(status(500))
        reply = client(gw).chat.completions.create(model=ROUTED, messages=MESSAGES)
        assert reply.ferryman["attempts"][0]["outcome"] == "breaker_open"  # the failed trial re-opened it
        assert breaker.state == "open"


def test_half_open_breaker_admits_one_trial_at_a_time(fakes):
    from concurrent.futures import ThreadPoolExecutor

    config = gateway_config(fakes, breaker={"fail_max": 1, "reset_timeout_s": 1.0})
    with GatewayThread(config) as gw:
        breaker = _trip_strong_openai(gw, fakes)
        time.sleep(1.1)
        fakes["strong-openai"].reset(default=slow(0.8))  # recovered, but the trial takes a while
        with ThreadPoolExecutor(4) as pool:
            trial = pool.submit(client(gw).chat.completions.create, model=ROUTED, messages=MESSAGES)
            time.sleep(0.3)  # the trial is in flight: everyone else skips the endpoint
            others = [
                pool.submit(client(gw).chat.completions.create, model=ROUTED, messages=MESSAGES) for _ in range(3)
            ]
            replies = [f.result() for f in others]
        assert trial.result().choices[0].message.content == "Answer from strong-openai."
        assert [r.ferryman["attempts"][0]["outcome"] for r in replies] == ["breaker_open"] * 3
        assert all(r.choices[0].message.content == "Answer from strong-anthropic." for r in replies)
        assert fakes["strong-openai"].requests == 1
        assert breaker.state == "closed"


def test_request_deadline_bounds_retries_and_fallback(fakes):
    import grpc

    from ferryman.gateway.v1 import gateway_pb2 as pb
    from ferryman.gateway.v1 import gateway_pb2_grpc

    for fake in fakes.values():
        fake.reset(default=slow(1.5))
    with GatewayThread(gateway_config(fakes)) as gw, grpc.insecure_channel(gw.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        request = pb.ChatCompletionRequest(model=ROUTED, messages=[pb.ChatMessage(role="user", content="hi")])
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            stub.ChatCompletion(request, metadata=(("authorization", f"Bearer {CLIENT_KEY}"),), timeout=0.5)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 1.0


def test_anthropic_disconnect_mid_stream_ends_with_an_error_event(gw, fakes):
    fakes["strong-anthropic"].reset(default=DISCONNECT)
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client(gw).chat.completions.create(model="strong-anthropic", messages=MESSAGES, stream=True):
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Answer from " and "after the stream started" in str(info.value)
    # before the first token there is still a fallback: strong-openai fails, strong-anthropic drops, weak answers
    fakes["strong-openai"].reset(default=status(500))
    fakes["strong-anthropic"].reset(default=Fault("disconnect", after_chunks=0))
    reply = client(gw).chat.completions.with_raw_response.create(model=ROUTED, messages=MESSAGES, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in reply.parse() if c.choices) == "Answer from weak-openai."
    assert reply.headers["x-ferryman-fallbacks"] == "2" and reply.headers["x-ferryman-served-tier"] == "weak"
