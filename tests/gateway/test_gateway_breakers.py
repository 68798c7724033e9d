"""Breakers that protect instead of amplify (issue #11, defect 1), on a real gateway and as units.

What must hold: one outcome per request per model (retries are not outcomes); a failure rate
over a window with a minimum volume; poison requests (failing on every model) and the gateway's
own full connection pool open no breaker; breakers never refuse every model of a chain.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from suite import ROUTED, run_sdk, sdk, sdk_call

from gateway.breakers import CLOSED, HALF_OPEN, OPEN, Breaker, Outcome
from gateway.config import BreakerConfig
from harness.fake_provider import DISCONNECT, slow, status
from harness.faults import ANSWERED, CLEAN, FALLBACK, Tally
from harness.gateway import GatewayThread, gateway_config

GROUP = "breakers"
MARKER = "POISON-PILL"


def row(table, fault: str, tally: Tally, expected: str) -> None:
    table.add(GROUP, fault, "HTTP (openai SDK)", tally, expected)
    assert tally.lost == 0, tally.lost_examples


def states(gw: GatewayThread) -> set[str]:
    return set(gw.gateway.resilience.breakers.states().values())


# ---------------------------------------------------------------- the state machine, with a fake clock


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def breaker(**cfg: float) -> tuple[Breaker, Clock, list[str]]:
    clock, changes = Clock(), []
    config = BreakerConfig(**({"failure_rate": 0.5, "min_requests": 4, "window_s": 10.0, "reset_timeout_s": 5.0} | cfg))
    b = Breaker("m", ("m",), config, lambda _, state, origin: changes.append(f"{state}/{origin}"), clock)
    return b, clock, changes


def test_opens_on_a_failure_rate_with_a_minimum_volume():
    b, clock, changes = breaker()
    for _ in range(3):
        b.record(Outcome.FAILURE)
    assert b.state == CLOSED  # 3 of 3 failed, but fewer than min_requests outcomes
    b.record(Outcome.SUCCESS)
    b.record(Outcome.SUCCESS)
    b.record(Outcome.FAILURE)  # 4 failures of 6 ≥ 50 %
    assert b.state == OPEN and changes == ["open/local"]
    assert not b.allow()
    clock.t += 5.0
    assert b.state == HALF_OPEN and b.allow() and not b.allow()  # one trial at a time
    b.record(Outcome.SUCCESS)
    assert b.state == CLOSED and b.counts() == (0, 0)  # closed with a fresh window


def test_below_the_threshold_it_never_opens_and_old_outcomes_expire():
    b, clock, _ = breaker()
    for i in range(100):  # 40 % failures, steadily
        b.record(Outcome.FAILURE if i % 5 >= 3 else Outcome.SUCCESS)
        clock.t += 0.1
    assert b.state == CLOSED
    clock.t += 10.0  # the window has moved past all of them
    assert b.counts() == (0, 0)


def test_unattributed_failures_count_once_per_request_and_only_while_the_model_serves_no_one():
    b, clock, _ = breaker()
    for _ in range(20):  # one client retrying the same failing request
        b.record(Outcome.UNATTRIBUTED, "same-request")
    assert b.state == CLOSED and b.counts() == (1, 1)
    b.record(Outcome.SUCCESS)
    for i in range(10):
        b.record(Outcome.UNATTRIBUTED, f"request-{i}")
    assert b.state == CLOSED and b.counts() == (0, 1)  # it serves others: not its fault
    clock.t += 11.0
    for i in range(4):  # nobody is served any more: an outage
        b.record(Outcome.UNATTRIBUTED, f"later-{i}")
    assert b.state == OPEN


def test_a_request_failing_again_on_a_model_that_serves_others_counts_once():
    b, clock, _ = breaker()
    b.record(Outcome.SUCCESS)
    for _ in range(20):  # one client repeating one request this model fails and the next model serves
        b.record(Outcome.FAILURE, "same-request")
    assert b.state == CLOSED and b.counts() == (1, 2)
    clock.t += 11.0
    for _ in range(4):  # the model serves no one: each failure is news (an outage), whatever the request
        b.record(Outcome.FAILURE, "same-request")
    assert b.state == OPEN


def test_a_repeated_request_the_model_has_served_counts_each_failure():
    b, _, _ = breaker()
    b.record(Outcome.FAILURE, "same-request")
    b.record(Outcome.SUCCESS, "same-request")  # a flaky model, under one request repeated (a benchmark)
    for _ in range(2):
        b.record(Outcome.FAILURE, "same-request")
    assert b.state == OPEN  # 3 failures of 4


def test_half_open_trial_failure_reopens_and_an_unattributed_one_only_ends_the_trial():
    b, clock, _ = breaker(min_requests=1)
    b.record(Outcome.FAILURE)
    clock.t += 5.0
    assert b.allow()
    b.record(Outcome.UNATTRIBUTED, "x")
    assert b.state == HALF_OPEN and b.allow()  # the trial ended without a verdict: a new one may start
    b.record(Outcome.FAILURE)
    assert b.state == OPEN and not b.allow()
    assert b.allow(probe=True) and b.state == HALF_OPEN  # every model open: a probe goes through


def test_adopting_an_open_breaker_from_another_replica():
    b, clock, changes = breaker()
    b.adopt_open(3.0)
    assert b.state == OPEN and changes == ["open/remote"] and not b.allow()
    clock.t += 3.0
    assert b.allow() and b.state == HALF_OPEN


# ---------------------------------------------------------------- on a real gateway


def test_retries_are_not_outcomes(fakes):
    """The issue: every failed attempt, retries included, counted toward fail_max."""
    config = gateway_config(fakes, breaker={"min_requests": 3})
    with GatewayThread(config) as gw:
        for _ in range(2):  # 500, 500, then OK: two failed attempts, one successful request
            fakes["strong-openai"].program(status(500), status(500))
            reply = sdk(gw).chat.completions.create(model=ROUTED, messages=[{"role": "user", "content": "hi"}])
            assert reply.choices[0].message.content == "Answer from strong-openai."
        breaker = gw.gateway.resilience.breakers["strong-openai"]
        assert breaker.state == CLOSED and breaker.counts() == (0, 2)


def test_poison_requests_open_no_breaker(fakes, fault_table):
    """The issue: two concurrent requests failing on every provider opened all four breakers."""
    for fake in fakes.values():
        fake.poison(MARKER)
    config = gateway_config(fakes, breaker={"min_requests": 3})
    poison = [{"role": "user", "content": f"{MARKER} please"}]
    with GatewayThread(config) as gw:
        tally = Tally()
        sdk_call(sdk(gw), stream=False)  # the gateway has served someone: a normal morning
        with ThreadPoolExecutor(2) as pool:  # the case: two at once, then the SDK retrying them
            for outcome, detail in pool.map(lambda i: sdk_call(sdk(gw), stream=i % 2 == 1, messages=poison), range(8)):
                tally.add(outcome, detail)
                assert outcome == CLEAN and "no model could serve" in detail, detail
        row(fault_table, "poison prompt (every model 500s), 2 concurrent × 4", tally, "503 each; no breaker opens")
        assert states(gw) == {CLOSED}
        normal = run_sdk(gw, 4, expected="Answer from strong-openai.")
        assert normal.counts()[:3] == (4, 4, 0)


def test_a_flood_of_distinct_poison_requests_among_normal_traffic_opens_nothing(fakes, fault_table):
    for fake in fakes.values():
        fake.poison(MARKER)
    config = gateway_config(fakes, breaker={"min_requests": 3})
    with GatewayThread(config) as gw:
        poison_tally, normal_tally = Tally(), Tally()

        def one(i: int) -> tuple[bool, str, str]:
            bad = i % 2 == 0
            content = f"{MARKER} variant {i}" if bad else f"question {i}"
            outcome, detail = sdk_call(sdk(gw), stream=i % 3 == 0, messages=[{"role": "user", "content": content}])
            return bad, outcome, detail

        with ThreadPoolExecutor(8) as pool:
            for bad, outcome, detail in pool.map(one, range(60)):
                (poison_tally if bad else normal_tally).add(outcome, detail)
                assert outcome == (CLEAN if bad else ANSWERED), detail
        row(fault_table, "30 distinct poison prompts among 30 normal, 8 at once", poison_tally, "503 each; no breaker")
        row(fault_table, "... the 30 normal requests beside them", normal_tally, "answered by the first model")
        assert states(gw) == {CLOSED}


def test_one_request_a_healthy_model_fails_opens_no_breaker_however_often_it_is_repeated(fakes, fault_table):
    """A model that serves everyone else 500s on one prompt, which the next model answers, and one client
    repeats that request: each repetition was one more failure, so with light traffic beside it the model's
    breaker opened and every other client's requests fell back for reset_timeout_s."""
    fakes["strong-openai"].when(MARKER, status(500))
    config = gateway_config(fakes, breaker={"min_requests": 3})
    with GatewayThread(config) as gw:
        assert sdk_call(sdk(gw), stream=False)[0] == ANSWERED  # the model serves others
        tally = run_sdk(gw, 8, expected="Answer from strong-anthropic.", messages=[{"role": "user", "content": MARKER}])
        row(fault_table, "one request one model 500s, repeated 8 times", tally, "next model; no breaker opens")
        assert tally.counts()[:4] == (8, 8, 8, 0)
        assert states(gw) == {CLOSED}
        normal = run_sdk(gw, 4, expected="Answer from strong-openai.")
        assert normal.counts()[:3] == (4, 4, 0)


def test_one_streamed_request_a_healthy_model_breaks_opens_no_breaker_however_often_it_is_repeated(fakes):
    """The same for a stream the model breaks after its first token (a prompt one provider cuts off): each
    repetition ends with an error event (no fallback after the first token) and was one more failure."""
    fakes["strong-openai"].when(MARKER, DISCONNECT)
    config = gateway_config(fakes, breaker={"min_requests": 3})
    with GatewayThread(config) as gw:
        assert sdk_call(sdk(gw), stream=True)[0] == ANSWERED  # the model serves others
        for _ in range(6):
            outcome, detail = sdk_call(sdk(gw), stream=True, messages=[{"role": "user", "content": MARKER}])
            assert outcome == CLEAN and "stream" in detail.lower(), detail
        assert states(gw) == {CLOSED}
        normal = run_sdk(gw, 4, expected="Answer from strong-openai.")
        assert normal.counts()[:3] == (4, 4, 0)


def test_when_every_breaker_is_open_the_first_model_is_still_tried(fakes, fault_table):
    """Distinct failing requests with no other traffic look like an outage and open the breakers;
    the next request is still tried on the chain's first model (a probe) and closes its breaker."""
    for fake in fakes.values():
        fake.poison(MARKER)
    config = gateway_config(fakes, breaker={"min_requests": 3})
    with GatewayThread(config) as gw:
        for i in range(3):
            outcome, _ = sdk_call(sdk(gw), stream=False, messages=[{"role": "user", "content": f"{MARKER} {i}"}])
            assert outcome == CLEAN
        assert states(gw) == {OPEN}
        tally = Tally()
        tally.add(*sdk_call(sdk(gw), stream=False, expected="Answer from strong-openai."))
        tally.add(*sdk_call(sdk(gw), stream=True, expected="Answer from strong-openai."))
        row(fault_table, "every breaker open, then a good request", tally, "answered: the first model is probed")
        assert tally.answered == 2
        assert gw.gateway.resilience.breakers["strong-openai"].state == CLOSED
        assert gw.gateway.metrics.breaker_probes.labels("strong-openai")._value.get() == 1


def test_local_pool_saturation_opens_no_breaker(fakes, fault_table):
    """The issue: 25 concurrent requests on a healthy, slow provider with a 5-connection pool → 15 × 503
    'circuit breaker open' and the breaker open for 30 s. The wait for a connection is local saturation."""
    # each answer holds its connection 2 s, so all 25 requests meet a full pool even when a loaded
    # machine spreads their arrival over a second (with 0.5 s, late arrivals got a freed connection)
    fakes["strong-openai"].reset(default=slow(2.0))
    overrides = {"strong-openai": {"max_connections": 5, "pool_timeout_s": 0.2, "read_timeout_s": 5.0}}
    # the fallbacks share this process's CPU with 25 client threads: give them room, so that a slow
    # answer from a loaded machine is not mistaken for a provider fault there
    overrides |= {name: {"read_timeout_s": 15.0} for name in ("strong-anthropic", "weak-openai", "weak-anthropic")}
    config = gateway_config(fakes, model_overrides=overrides, breaker={"min_requests": 3})
    with GatewayThread(config) as gw, ThreadPoolExecutor(25) as pool:
        tally = Tally()
        results = list(pool.map(lambda i: sdk_call(sdk(gw), stream=i % 2 == 1), range(25)))
        for outcome, detail in results:
            tally.add(outcome, detail)
        row(fault_table, "gateway's own pool full (25 at once, 5 connections)", tally, "5 answered, 20 next model")
        assert tally.counts()[:4] == (25, 25, 20, 0)
        assert states(gw) == {CLOSED}
        reply = sdk(gw).chat.completions.create(model=ROUTED, messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "Answer from strong-openai."
        outcomes = gw.gateway.metrics.render().decode()
        assert 'ferryman_gateway_fallbacks_total{model="strong-openai",reason="saturated"} 20.0' in outcomes


def test_a_failing_model_opens_after_min_requests_and_fallbacks_absorb_it(fakes, fault_table):
    fakes["strong-openai"].reset(default=status(503))
    config = gateway_config(fakes, breaker={"min_requests": 5, "reset_timeout_s": 0.5})
    with GatewayThread(config) as gw:
        tally = run_sdk(gw, 10, expected="Answer from strong-anthropic.")
        row(fault_table, "one model 503s every request", tally, "next model; its breaker opens after 5")
        assert tally.counts()[:4] == (10, 10, 10, 0)
        assert fakes["strong-openai"].requests == 5 * 3  # 5 requests × 3 tries, then skipped
        time.sleep(0.6)
        fakes["strong-openai"].reset()  # recovered: the trial request closes the breaker
        assert sdk_call(sdk(gw), stream=False)[0] == ANSWERED
        assert gw.gateway.resilience.breakers["strong-openai"].state == CLOSED


def test_half_open_breaker_admits_one_trial_at_a_time(fakes):
    config = gateway_config(fakes, breaker={"min_requests": 1, "reset_timeout_s": 1.0})
    with GatewayThread(config) as gw:
        fakes["strong-openai"].reset(default=status(500))
        assert sdk_call(sdk(gw), stream=False)[0] == FALLBACK
        breaker = gw.gateway.resilience.breakers["strong-openai"]
        assert breaker.state == OPEN
        time.sleep(1.1)
        fakes["strong-openai"].reset(default=slow(0.8))  # recovered, but the trial takes a while
        with ThreadPoolExecutor(4) as pool:
            trial = pool.submit(sdk_call, sdk(gw), stream=False)
            time.sleep(0.3)  # the trial is in flight: everyone else skips the model
            others = [pool.submit(sdk_call, sdk(gw), stream=False) for _ in range(3)]
            replies = [f.result() for f in others]
        assert trial.result() == (ANSWERED, "Answer from strong-openai.")
        assert replies == [(FALLBACK, "Answer from strong-anthropic.")] * 3
        assert fakes["strong-openai"].requests == 1
        assert breaker.state == CLOSED


@pytest.mark.parametrize("rate", [0.2])
def test_random_failures_below_the_threshold_never_open(fakes, rate):
    """20 % of provider calls fail at random; with retries and the 50 % rate no breaker opens."""
    fakes["strong-openai"].fail_at_random(rate, seed=7)
    config = gateway_config(fakes, breaker={"min_requests": 5})
    with GatewayThread(config) as gw:
        tally = run_sdk(gw, 40)
        assert tally.answered == 40 and states(gw) == {CLOSED}
