"""Learning from traffic, end to end on loopback: a real gateway, fake providers, a fake judge, the
openai SDK as the client, SQLite and a real Redis as the store.

The policy ``fixed-half`` routes with the scorer unreachable here, so it serves from the strong
tier (strong-openai) and the shadow asks the weak tier (weak-openai). The fake judge prefers the
answer that contains "strong" ("Answer from strong-openai."), in both orders, unless a test
changes its rule. Every fault test counts sent / answered / lost and requires lost = 0 and every
client answer to be the routed model's.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ferryman.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from gateway.config import parse_config
from gateway.learning.alarms import IN_A_ROW
from gateway.learning.quality import Judged, summarize
from gateway.learning.records import Verdict
from gateway.learning.tenants import tenant_id
from gateway.learning.worker import Job
from harness.fake_judge import FakeJudge, always_a, by_question, nonsense, prefer_marker, two_verdicts
from harness.fake_provider import FakeProvider, slow, status
from harness.gateway import CLIENT_KEY, ENV, GatewayThread, config_dict, gateway_config

POLICY = "fixed-half"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why is the sky blue?"}]
STRONG_TEXT = "Answer from strong-openai."
WEAK_TEXT = "Answer from weak-openai."
OTHER_KEY = "test-client-key-2"


@pytest.fixture(scope="module")
def _judge_server() -> Iterator[FakeJudge]:
    judge = FakeJudge().start()
    yield judge
    judge.stop()


@pytest.fixture
def judge(_judge_server: FakeJudge) -> FakeJudge:
    _judge_server.reset()
    _judge_server.rule = prefer_marker()
    _judge_server.prompts.clear()
    return _judge_server


def learning_config(*args: Any, **kwargs: Any) -> Any:
    """A validated gateway config (see ``learning_config_dict``)."""
    return parse_config(learning_config_dict(*args, **kwargs))


def learning_config_dict(
    fakes: dict[str, FakeProvider],
    judge: FakeJudge,
    store: str,
    *,
    rate: float = 1.0,
    budget: float = 10.0,
    feedback: bool = True,
    policies: tuple[str, ...] = (POLICY,),
    shadow: dict[str, Any] | None = None,
    judge_section: dict[str, Any] | None = None,
    store_section: dict[str, Any] | None = None,
    model_overrides: dict[str, dict[str, Any]] | None = None,
    **learning: Any,
) -> Any:
    """A gateway config over the fakes with the judge as a keyless local model and learning on."""
    section = {
        "policies": list(policies),
        # generous: on a loaded test machine a store call may take a second; the fault tests set their own
        "store": {"url": store, "timeout_s": 5.0, "retry_s": 0.5} | (store_section or {}),
        "shadow": {"sample_rate": rate, "daily_budget_usd": budget, "timeout_s": 10.0} | (shadow or {}),
        "judge": {"model": "judge-local"} | (judge_section or {}),
        "feedback": {"enabled": feedback},
        # the worker at full priority: on a busy test machine a niced one (or one under SCHED_IDLE, the default)
        # may see its store calls time out
        "worker_nice": 0,
        "worker_sched_idle": False,
    } | learning
    # the worker's connections arrive in bursts (jobs queue while it starts) at fakes that share this
    # process's GIL: 1 s to connect is not always enough on a loaded test machine
    slow_ok = {"connect_timeout_s": 5.0, "read_timeout_s": 10.0}
    overrides = {"judge-local": {"api_key_env": None} | slow_ok, "weak-openai": slow_ok} | (model_overrides or {})
    return config_dict({**fakes, "judge-local": judge}, model_overrides=overrides, learning=section)


def sdk(gw: GatewayThread, key: str = CLIENT_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.http_url + "/v1", api_key=key, max_retries=0, timeout=10)


@dataclass
class Tally:
    sent: int = 0
    answered: int = 0
    lost: int = 0
    slowest_s: float = 0.0


def send(gw: GatewayThread, n: int, key: str = CLIENT_KEY, expect: str = STRONG_TEXT) -> tuple[Tally, list[str]]:
    """``n`` requests, alternately whole and streamed; (tally, response ids)."""
    tally, ids = Tally(), []
    client = sdk(gw, key)
    for i in range(n):
        tally.sent += 1
        started = time.monotonic()
        try:
            if i % 2 == 0:
                answer = client.chat.completions.create(model=POLICY, messages=MESSAGES)
                text, rid = answer.choices[0].message.content, answer.id
            else:
                chunks = list(client.chat.completions.create(model=POLICY, messages=MESSAGES, stream=True))
                text, rid = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks[0].id
        except openai.APIError:
            tally.lost += 1
            continue
        tally.slowest_s = max(tally.slowest_s, time.monotonic() - started)
        assert text == expect
        tally.answered += 1
        ids.append(rid)
    return tally, ids


def settle(gw: GatewayThread) -> None:
    assert gw.call(gw.gateway.learning.quiesce(60), timeout=70), "learning jobs still pending after 60 s"


def metrics(gw: GatewayThread) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(gw.admin_url + "/metrics").text  # the admin listener (issue #11)
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(gw: GatewayThread, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    return sum(
        v
        for (n, ls), v in metrics(gw).items()
        if n == name and all(dict(ls).get(k) == want for k, want in labels.items())
    )


def record(gw: GatewayThread, rid: str) -> Any:
    return gw.call(gw.gateway.learning.store.store.get(rid))


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'learning.db'}"


# ----------------------------------------------------------------------------- the happy path


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_shadow_judge_store_and_export(fakes, judge, tmp_path, request, backend):
    url = sqlite_url(tmp_path) if backend == "sqlite" else request.getfixturevalue("redis_server").url
    with GatewayThread(learning_config(fakes, judge, url)) as gw:
        tally, ids = send(gw, 4)
        settle(gw)
        assert (tally.sent, tally.answered, tally.lost) == (4, 4, 0)
        # each answer (whole and streamed) was shadowed once on the weak tier, judged in both orders
        assert fakes["weak-openai"].requests == 4
        assert judge.requests == 8
        assert all("[User Question]\nWhy is the sky blue?" in p for p in judge.prompts)
        assert sum(STRONG_TEXT in p.split("Assistant A's Answer]\n", 1)[1][:40] for p in judge.prompts) == 4
        rec = record(gw, ids[1])
        assert rec.served_model == "strong-openai" and rec.served_answer == STRONG_TEXT
        assert rec.shadow_model == "weak-openai" and rec.shadow_answer == WEAK_TEXT and rec.shadow_status == "ok"
        assert rec.verdict == "strong" and (rec.judge_strong_first, rec.judge_weak_first) == ("strong", "strong")
        assert rec.policy == POLICY and rec.decision_source == "scorer_unavailable" and rec.routed_tier == "strong"
        assert rec.tenant == tenant_id(CLIENT_KEY)
        assert json.loads(rec.messages_json) == MESSAGES
        assert rec.served_cost_usd > 0 and rec.shadow_cost_usd > 0 and rec.judge_cost_usd > 0
        assert metric(gw, "ferryman_learning_requests_total", policy=POLICY, outcome="shadowed") == 4
        assert metric(gw, "ferryman_learning_judge_verdicts_total", verdict="strong") == 4
        assert metric(gw, "ferryman_learning_spend_usd_total", kind="judge") > 0
        assert metric(gw, "ferryman_learning_live_quality_gap", policy=POLICY) == 0.0  # all served strong
        assert metric(gw, "ferryman_learning_live_savings", policy=POLICY) == 0.0

    out = tmp_path / "battles.csv"
    env = os.environ | {"FERRYMAN_LEARN_STORE": url}
    done = subprocess.run(
        [sys.executable, "-m", "ferryman", "learn", "export", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 4 labelled comparisons of 4 records" in done.stdout
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:9] == [
        "id",
        "model_a",
        "model_b",
        "prompt",
        "response_a",
        "response_b",
        "winner_model_a",
        "winner_model_b",
        "winner_tie",
    ]
    assert {r["id"] for r in rows} == set(ids)
    row = rows[0]
    assert (row["model_a"], row["model_b"]) == ("strong-openai", "weak-openai")
    assert json.loads(row["prompt"]) == ["Why is the sky blue?"]
    assert json.loads(row["response_a"]) == [STRONG_TEXT] and json.loads(row["response_b"]) == [WEAK_TEXT]
    assert (row["winner_model_a"], row["winner_model_b"], row["winner_tie"]) == ("1", "0", "0")
    # the lab reads the file as it reads the public Arena data
    from lab.data.battles import load_battles

    battles, report = load_battles(out)
    assert report.kept == 4 and {b.winner for b in battles} == {"model_a"}


def test_off_by_default_and_only_for_opted_in_policies(fakes, judge, tmp_path):
    with GatewayThread(gateway_config(fakes)) as gw:
        assert gw.gateway.learning is None
        send(gw, 2)
        r = httpx.post(gw.http_url + "/v1/feedback", json={"id": "x", "rating": "good"}, headers=_auth())
        assert r.status_code == 404 and "not enabled" in r.json()["error"]["message"]
    with GatewayThread(learning_config(fakes, judge, sqlite_url(tmp_path), policies=("ferryman-balanced",))) as gw:
        tally, _ = send(gw, 4)
        settle(gw)
        assert tally.answered == 4
        assert fakes["weak-openai"].requests == 0 and judge.requests == 0
        assert gw.call(gw.gateway.learning.store.store.count()) == 0


def test_sample_rate_is_honoured(fakes, judge, tmp_path):
    cfg = learning_config(fakes, judge, sqlite_url(tmp_path), rate=0.25, feedback=False, shadow={"max_concurrent": 64})
    with GatewayThread(cfg) as gw:
        tally, _ = send(gw, 80)
        settle(gw)
        shadowed = metric(gw, "ferryman_learning_requests_total", outcome="shadowed")
        skipped = metric(gw, "ferryman_learning_requests_total", outcome="not_sampled")
        total = metric(gw, "ferryman_learning_requests_total")
        calls = metric(gw, "ferryman_learning_shadow_calls_total", model="weak-openai")
        outcomes = {k: v for k, v in metrics(gw).items() if k[0] == "ferryman_learning_shadow_calls_total"}
    assert tally.answered == 80 and total == 80, outcomes
    assert 8 <= total - skipped <= 34  # sampled ~ binomial(80, 0.25): mean 20, sd 3.9; bounds at about 3 sd
    assert calls == shadowed and fakes["weak-openai"].requests == shadowed, outcomes  # one call each


# ----------------------------------------------------------------------------- protections


def alarms(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The learning alarms logged (gateway.learning.alarms)."""
    return [r.getMessage() for r in caplog.records if r.name == "gateway.learning.alarms"]


def test_daily_budget_cap_stops_shadowing(fakes, judge, tmp_path, caplog):
    # one job's pessimistic estimate (shadow + 2 judge calls of max_tokens 1024 at 1.5 $/Mtok) is about
    # $0.0031; a $0.005 budget admits one job at a time and stops once about $0.002 has been spent
    cfg = learning_config(fakes, judge, sqlite_url(tmp_path), budget=0.005)
    with caplog.at_level(logging.WARNING, logger="gateway.learning.alarms"), GatewayThread(cfg) as gw:
        tally = Tally()
        for _ in range(10):  # one at a time: each job settles before the next request
            t, _ = send(gw, 1)
            settle(gw)
            tally.sent, tally.answered, tally.lost = (
                tally.sent + t.sent,
                tally.answered + t.answered,
                tally.lost + t.lost,
            )
        over = metric(gw, "ferryman_learning_requests_total", outcome="over_budget")
        shadowed = metric(gw, "ferryman_learning_requests_total", outcome="shadowed")
        spent = metric(gw, "ferryman_learning_budget_spent_today_usd")
        stored_spend = gw.call(gw.gateway.learning.store.store.spend(time.strftime("%Y-%m-%d", time.gmtime())))
    assert (tally.sent, tally.answered, tally.lost) == (10, 10, 0)
    assert shadowed >= 1 and over >= 1 and shadowed + over == 10
    assert 0 < spent <= 0.005 and stored_spend == pytest.approx(spent)
    assert fakes["weak-openai"].requests == shadowed
    # said once in the log (was: only counted), however many samples the budget refused that day
    (line,) = alarms(caplog)
    assert line.startswith("learning: the daily shadow budget is used up ($0.00") and line.endswith(
        "of learning.shadow.daily_budget_usd $0.005): no more shadow comparisons until 00:00 UTC"
    ), line


def test_tenant_opt_out(fakes, judge, tmp_path):
    cfg = learning_config(fakes, judge, sqlite_url(tmp_path), shadow={"opt_out_tenants": [tenant_id(OTHER_KEY)]})
    with GatewayThread(cfg, keys=frozenset({CLIENT_KEY, OTHER_KEY})) as gw:
        out_tally, out_ids = send(gw, 4, key=OTHER_KEY)
        in_tally, in_ids = send(gw, 2)
        settle(gw)
        assert out_tally.answered == 4 and in_tally.answered == 2
        assert metric(gw, "ferryman_learning_requests_total", outcome="opted_out") == 4
        assert fakes["weak-openai"].requests == 2  # only the other tenant's
        assert all(record(gw, rid) is None for rid in out_ids)  # nothing of theirs is stored
        assert all(record(gw, rid) is not None for rid in in_ids)
        # and the opted-out tenant cannot rate (nothing recorded)
        r = httpx.post(gw.http_url + "/v1/feedback", json={"id": out_ids[0], "rating": "bad"}, headers=_auth(OTHER_KEY))
        assert r.status_code == 404


@pytest.mark.parametrize("fault", ["error", "hang"])
def test_shadow_provider_failing_or_hanging_never_touches_clients(fakes, judge, tmp_path, fault):
    fakes["weak-openai"].reset(default=status(500) if fault == "error" else slow(30))
    cfg = learning_config(
        fakes, judge, sqlite_url(tmp_path), shadow={"timeout_s": 5.0, "max_concurrent": 2, "max_queued": 0}
    )
    with GatewayThread(cfg) as gw:
        tally, ids = send(gw, 8)
        # clients are served at once (well within the 5 s a hung shadow takes), while shadows fail or
        # hang (and, hanging, fill their 2 slots)
        assert (tally.sent, tally.answered, tally.lost) == (8, 8, 0)
        assert tally.slowest_s < 2.5
        settle(gw)
        outcome = "error" if fault == "error" else "timeout"
        calls = metric(gw, "ferryman_learning_shadow_calls_total", model="weak-openai", outcome=outcome)
        shadowed = metric(gw, "ferryman_learning_requests_total", outcome="shadowed")
        saturated = metric(gw, "ferryman_learning_requests_total", outcome="saturated")
        assert calls == shadowed and shadowed + saturated == 8
        if fault == "hang":
            assert saturated >= 4  # 2 slots held for 5 s while 8 requests arrived
        assert judge.requests == 0  # nothing to judge
        # the weak provider's failures never reached its breaker: clients may still use it
        assert gw.gateway.resilience.breakers["weak-openai"].state == "closed"
        assert record(gw, ids[0]).shadow_status in ("", outcome)
        assert metric(gw, "ferryman_learning_requests_total") == 8


def test_shadow_jobs_beyond_max_concurrent_wait_and_are_all_judged(fakes, judge, tmp_path):
    """A slow partner model: 2 jobs run at once, 6 more wait (shadow.max_queued) instead of being shed."""
    fakes["weak-openai"].reset(default=slow(1.0))
    shadow = {"max_concurrent": 2, "max_queued": 6}
    cfg = learning_config(fakes, judge, sqlite_url(tmp_path), feedback=False, shadow=shadow)
    with GatewayThread(cfg) as gw:
        tally, ids = send(gw, 8)
        assert (tally.answered, tally.lost) == (8, 0) and tally.slowest_s < 2.5  # clients never wait for a slot
        settle(gw)
        assert metric(gw, "ferryman_learning_requests_total", outcome="shadowed") == 8  # was 2, and 6 saturated
        assert metric(gw, "ferryman_learning_requests_total", outcome="saturated") == 0
        assert metric(gw, "ferryman_learning_shadow_calls_total", model="weak-openai", outcome="ok") == 8
        assert metric(gw, "ferryman_learning_judge_verdicts_total", verdict="strong") == 8
        assert fakes["weak-openai"].requests == 8
        assert all(record(gw, rid).verdict == "strong" for rid in ids)


def test_a_hanging_shadow_provider_holds_the_queue_at_its_bound(fakes, judge, tmp_path):
    """Hung shadow calls: 2 run, 2 wait, the rest are shed (saturated); nothing grows past the bound."""
    fakes["weak-openai"].reset(default=slow(30))
    shadow = {"timeout_s": 3.0, "max_concurrent": 2, "max_queued": 2}
    cfg = learning_config(fakes, judge, sqlite_url(tmp_path), feedback=False, shadow=shadow)
    with GatewayThread(cfg) as gw:
        tally, _ = send(gw, 8)
        assert (tally.answered, tally.lost) == (8, 0) and tally.slowest_s < 2.5
        deadline = time.monotonic() + 2.0  # the first 2 calls hang for 3 s from their start
        while fakes["weak-openai"].requests < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        # admitted: 2 running (the only calls the provider got) and 2 waiting; the other 4 shed
        assert metric(gw, "ferryman_learning_shadow_inflight") == 4
        assert fakes["weak-openai"].requests == 2
        assert metric(gw, "ferryman_learning_requests_total", outcome="saturated") == 4
        settle(gw)  # the waiting 2 run once the hung 2 time out, and time out in turn
        assert metric(gw, "ferryman_learning_shadow_calls_total", model="weak-openai", outcome="timeout") == 4
        assert fakes["weak-openai"].requests == 4 and judge.requests == 0
        assert gw.gateway.learning.admission.budget.reserved == pytest.approx(0.0, abs=1e-12)  # all settled


def test_a_failing_shadow_model_is_logged_once_and_its_recovery_too(fakes, judge, tmp_path, caplog):
    """Was: shadow calls failing on every sample were only counted (and logged at DEBUG)."""
    fakes["weak-openai"].reset(default=status(500))
    cfg = learning_config(fakes, judge, sqlite_url(tmp_path))
    with caplog.at_level(logging.WARNING, logger="gateway.learning.alarms"), GatewayThread(cfg) as gw:
        failing, _ = send(gw, IN_A_ROW + 2)
        settle(gw)
        fakes["weak-openai"].reset()
        answering, _ = send(gw, 1)
        settle(gw)
    assert (failing.answered + answering.answered, failing.lost) == (IN_A_ROW + 3, 0)
    assert alarms(caplog) == [
        f"learning: shadow calls to weak-openai failed {IN_A_ROW} times in a row (last: error): no comparisons "
        "with it until it answers; clients are not affected (ferryman_learning_shadow_calls_total)",
        f"learning: shadow calls to weak-openai answer again (after {IN_A_ROW + 2} failures)",
    ]


def test_a_judge_that_gives_no_verdicts_is_logged_once_and_its_recovery_too(fakes, judge, tmp_path, caplog):
    """Was: a judge answering without a verdict token (e.g. a model that ignores the judge prompt) was paid for
    on every sample and left every comparison unlabelled, with nothing in the log."""
    judge.rule = nonsense
    cfg = learning_config(fakes, judge, sqlite_url(tmp_path))
    with caplog.at_level(logging.WARNING, logger="gateway.learning.alarms"), GatewayThread(cfg) as gw:
        send(gw, IN_A_ROW + 2)
        settle(gw)
        judge.rule = prefer_marker()
        send(gw, 1)
        settle(gw)
        assert metric(gw, "ferryman_learning_judge_verdicts_total", verdict="invalid") == IN_A_ROW + 2
    assert alarms(caplog) == [
        f"learning: the judge judge-local gave no usable verdict for {IN_A_ROW} comparisons in a row (last: "
        "invalid; its answers did not hold exactly one verdict ([[A]], [[B]] or [[C]]): is learning.judge.model a "
        "model that follows the judge prompt?); they are paid for and stored without a label (`ferryman learn "
        "judge` judges them again)",
        f"learning: the judge judge-local gives verdicts again (after {IN_A_ROW + 2} comparisons without)",
    ]


def test_hanging_shadow_does_not_take_the_clients_connections(fakes, judge, tmp_path):
    """Shadows use their own connection pool: hung shadow calls to a model leave clients of it unaffected."""
    fakes["weak-openai"].reset(default=slow(30))
    cfg = learning_config(
        fakes,
        judge,
        sqlite_url(tmp_path),
        shadow={"timeout_s": 10.0, "max_concurrent": 4},
        model_overrides={"weak-openai": {"max_connections": 2}},
    )
    with GatewayThread(cfg) as gw:
        send(gw, 4)  # 4 hung shadow calls to weak-openai (more than its 2 connections)
        fakes["weak-openai"].reset()  # now it answers at once
        started = time.monotonic()
        answer = sdk(gw).chat.completions.create(model="weak-openai", messages=MESSAGES)
        assert answer.choices[0].message.content == WEAK_TEXT
        assert time.monotonic() - started < 5.0  # not the 10 s of a hung shadow call
        settle(gw)


@pytest.mark.parametrize(
    ("rule", "verdict", "per_order"),
    [(nonsense, "invalid", "invalid"), (two_verdicts, "invalid", "invalid"), (always_a, "tie", None)],
)
def test_judge_nonsense_or_position_bias(fakes, judge, tmp_path, rule, verdict, per_order):
    judge.rule = rule
    with GatewayThread(learning_config(fakes, judge, sqlite_url(tmp_path))) as gw:
        tally, ids = send(gw, 4)
        settle(gw)
        assert (tally.answered, tally.lost) == (4, 0)
        assert metric(gw, "ferryman_learning_judge_verdicts_total", verdict=verdict) == 4
        rec = record(gw, ids[0])
        assert rec.verdict == verdict and rec.shadow_answer == WEAK_TEXT
        if per_order:
            assert metric(gw, "ferryman_learning_judge_answers_total", verdict=per_order) == 8
        else:  # [[A]] whatever the order: strong when strong is shown first, weak when weak is
            assert (rec.judge_strong_first, rec.judge_weak_first) == ("strong", "weak")
            assert metric(gw, "ferryman_learning_judge_inconsistent_total") == 4
        labelled = metric(gw, "ferryman_learning_judged_total")
        assert labelled == (4 if verdict == "tie" else 0)


def test_inconsistent_verdicts_can_be_discarded(fakes, judge, tmp_path):
    judge.rule = always_a
    cfg = learning_config(fakes, judge, sqlite_url(tmp_path), judge_section={"on_inconsistent": "discard"})
    with GatewayThread(cfg) as gw:
        send(gw, 2)
        settle(gw)
        assert metric(gw, "ferryman_learning_judge_verdicts_total", verdict="inconsistent") == 2
        assert metric(gw, "ferryman_learning_judged_total") == 0


def test_judge_down_is_counted_and_judged_again_later(fakes, judge, tmp_path):
    import yaml

    judge.reset(default=status(503))
    url = sqlite_url(tmp_path)
    data = learning_config_dict(fakes, judge, url)
    with GatewayThread(parse_config(data)) as gw:
        tally, ids = send(gw, 2)
        settle(gw)
        assert tally.answered == 2
        assert metric(gw, "ferryman_learning_judge_verdicts_total", verdict="error") == 2
        assert record(gw, ids[0]).shadow_answer == WEAK_TEXT  # the pair is kept: it can be judged later
    judge.reset()  # the judge is back: ferryman learn judge asks it about the stored pairs
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(data))
    cmd = [sys.executable, "-m", "ferryman", "learn", "judge", "--config", str(tmp_path / "gateway.yaml")]
    done = subprocess.run(
        [*cmd, "--store", url], env=os.environ | ENV, capture_output=True, text=True, timeout=120, check=True
    )
    assert "judged 2 pairs (strong 2)" in done.stdout
    assert judge.requests == 4  # both orders, for each pair
    out = tmp_path / "b.csv"
    subprocess.run([sys.executable, "-m", "ferryman", "learn", "export", "--store", url, "--out", str(out)], check=True)
    with out.open(newline="") as f:
        assert {r["id"]: r["winner_model_a"] for r in csv.DictReader(f)} == {ids[0]: "1", ids[1]: "1"}


def test_redis_store_killed_or_frozen(fakes, judge, redis_server):
    # clients must stay well within the store's 4 s timeout while it hangs
    cfg = learning_config(fakes, judge, redis_server.url, store_section={"timeout_s": 4.0, "retry_s": 8})
    with GatewayThread(cfg) as gw:
        before, ids = send(gw, 2)
        settle(gw)
        assert record(gw, ids[0]) is not None
        # frozen: every store call hangs until its timeout; then the store is down for retry_s
        redis_server.process.proc.send_signal(signal.SIGSTOP)
        try:
            frozen, _ = send(gw, 3)
            settle(gw)
            down_before = metric(gw, "ferryman_learning_requests_total", outcome="store_down")
            while_down, _ = send(gw, 3)
            frozen.sent, frozen.answered, frozen.lost = (
                frozen.sent + while_down.sent,
                frozen.answered + while_down.answered,
                frozen.lost + while_down.lost,
            )
            assert max(frozen.slowest_s, while_down.slowest_s) < 2.5
            r = httpx.post(
                gw.http_url + "/v1/feedback", json={"id": ids[0], "rating": "good"}, headers=_auth(), timeout=5
            )
            assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
            settle(gw)
        finally:
            redis_server.process.proc.send_signal(signal.SIGCONT)
        timeouts = metric(gw, "ferryman_learning_store_ops_total", outcome="timeout")
        down = metric(gw, "ferryman_learning_requests_total", outcome="store_down") - down_before
        assert timeouts >= 1 and down == 3  # every request while the store was known to be down
        # killed (once the down window has passed, so that the gateway tries it again)
        redis_server.stop()
        while not gw.gateway.learning.store.usable():
            time.sleep(0.1)
        killed, _ = send(gw, 6)
        settle(gw)
        errors = metric(gw, "ferryman_learning_store_ops_total", outcome="error")
    total = [before, frozen, killed]
    assert sum(t.sent for t in total) == sum(t.answered for t in total) == 14
    assert sum(t.lost for t in total) == 0
    assert killed.slowest_s < 2.5 and errors >= 1


def test_sqlite_store_unwritable(fakes, judge, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with GatewayThread(learning_config(fakes, judge, f"sqlite://{blocker / 'learning.db'}")) as gw:
        tally, ids = send(gw, 4)
        settle(gw)
        assert (tally.sent, tally.answered, tally.lost) == (4, 4, 0)
        assert metric(gw, "ferryman_learning_store_ops_total", outcome="error") >= 1
        r = httpx.post(gw.http_url + "/v1/feedback", json={"id": ids[0], "rating": "good"}, headers=_auth())
        assert r.status_code == 503


def test_redaction_rules_and_callable(fakes, judge, tmp_path, monkeypatch):
    module = tmp_path / "my_redactor.py"
    module.write_text("def scrub(text):\n    return text.replace('Alice', '[name]')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    redact = {"rules": [{"pattern": r"\b\d{3}-\d{4}\b", "replace": "[phone]"}], "callable": "my_redactor:scrub"}
    cfg = learning_config(fakes, judge, sqlite_url(tmp_path), redact=redact)
    with GatewayThread(cfg) as gw:
        secret = [{"role": "user", "content": "Alice's number is 555-1234. Why is the sky blue?"}]
        answer = sdk(gw).chat.completions.create(model=POLICY, messages=secret)
        settle(gw)
        rec = record(gw, answer.id)
        assert json.loads(rec.messages_json)[0]["content"] == "[name]'s number is [phone]. Why is the sky blue?"
        # the judge and the shadow model saw the real prompt; only what is stored is redacted
        assert "Alice's number is 555-1234" in fakes["weak-openai"].last_body["messages"][0]["content"]


# ----------------------------------------------------------------------------- feedback


def _auth(key: str = CLIENT_KEY) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_feedback_over_http(fakes, judge, tmp_path):
    cfg = learning_config(fakes, judge, sqlite_url(tmp_path), rate=0.0)  # feedback alone, no shadowing
    with GatewayThread(cfg, keys=frozenset({CLIENT_KEY, OTHER_KEY})) as gw:
        _, ids = send(gw, 2)
        url = gw.http_url + "/v1/feedback"
        # at once: the write of the answer may still be pending; feedback waits for it
        r = httpx.post(url, json={"id": ids[0], "rating": "bad"}, headers=_auth())
        assert r.status_code == 200 and r.json() == {"object": "feedback", "id": ids[0], "rating": "bad"}
        r = httpx.post(url, json={"id": ids[1], "rating": "GOOD"}, headers=_auth())
        assert r.status_code == 200 and r.json()["rating"] == "good"
        settle(gw)
        assert record(gw, ids[0]).rating == "bad" and record(gw, ids[1]).rating == "good"
        assert record(gw, ids[0]).shadow_status == ""  # recorded for feedback, never shadowed
        assert fakes["weak-openai"].requests == 0
        cases = [
            ({"id": "chatcmpl-unknown", "rating": "good"}, _auth(), 404, "not_found"),
            ({"id": ids[0], "rating": "good"}, _auth(OTHER_KEY), 404, "not_found"),  # another tenant's answer
            ({"id": ids[0], "rating": "excellent"}, _auth(), 400, None),
            ({"id": ids[0], "rating": 5}, _auth(), 400, None),
            ({"id": ids[0]}, _auth(), 400, None),
            ({"rating": "good"}, _auth(), 400, None),
            ({"id": ids[0], "rating": "good", "comment": "x"}, _auth(), 400, None),
            ({"id": "x" * 500, "rating": "good"}, _auth(), 400, None),
            ({"id": ids[0], "rating": "good"}, {}, 401, "invalid_api_key"),
        ]
        for body, headers, code, error_code in cases:
            r = httpx.post(url, json=body, headers=headers)
            assert r.status_code == code, (body, r.text)
            assert r.json()["error"]["code"] == error_code
        assert httpx.post(url, content=b"{not json", headers=_auth()).status_code == 400
        assert httpx.post(url, json=["a"], headers=_auth()).status_code == 400
        assert record(gw, ids[0]).rating == "bad"  # none of the failed calls changed it
        assert metric(gw, "ferryman_learning_feedback_total", outcome="unknown_id") == 2
        assert metric(gw, "ferryman_learning_feedback_total", outcome="invalid") == 8  # every 400 above
        # a missing field is named as required (was: "rating must be one of 'good', 'bad', got None")
        missing = [
            ({"id": ids[0]}, "rating", "rating is required: one of 'good', 'bad'"),
            ({"rating": "good"}, "id", "id is required: the response id a completion returned"),
        ]
        for body, field, message in missing:
            with pytest.raises(openai.BadRequestError) as err:
                sdk(gw).post("/feedback", cast_to=dict, body=body)
            assert (err.value.body["param"], err.value.body["message"]) == (field, message)


def test_every_malformed_feedback_is_refused_and_counted_once(fakes, judge, tmp_path):
    """Was: a body that was not JSON, not an object or had unknown fields got its 400 but was not counted
    in ferryman_learning_feedback_total{outcome="invalid"} (2 counted of 4 malformed sent); now every
    refused body counts once, whichever check refuses it."""
    cfg = learning_config(fakes, judge, sqlite_url(tmp_path), rate=0.0)
    with GatewayThread(cfg) as gw:
        _, ids = send(gw, 1)
        client = sdk(gw)  # an application rating answers through the openai SDK's own client
        malformed: list[dict[str, Any]] = [
            {"content": b"{not json"},
            {"content": b'["a"]'},
            {"body": {"id": ids[0], "rating": "good", "comment": "x"}},
            {"body": {"id": ids[0]}},
            {"body": {"id": ids[0], "rating": "excellent"}},
        ]
        for request in malformed:
            with pytest.raises(openai.BadRequestError):
                client.post("/feedback", cast_to=dict, **request)
        assert metric(gw, "ferryman_learning_feedback_total", outcome="invalid") == len(malformed)
        assert client.post("/feedback", cast_to=dict, body={"id": ids[0], "rating": "good"})["rating"] == "good"
        assert metric(gw, "ferryman_learning_feedback_total", outcome="invalid") == len(malformed)


def test_feedback_over_grpc(fakes, judge, tmp_path):
    cfg = learning_config(fakes, judge, sqlite_url(tmp_path), rate=0.0)
    with GatewayThread(cfg) as gw, grpc.insecure_channel(gw.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        md = (("authorization", f"Bearer {CLIENT_KEY}"),)
        msgs = [gateway_pb2.ChatMessage(role=m["role"], content=m["content"]) for m in MESSAGES]
        answer = stub.ChatCompletion(gateway_pb2.ChatCompletionRequest(model=POLICY, messages=msgs), metadata=md)
        reply = stub.SubmitFeedback(
            gateway_pb2.SubmitFeedbackRequest(response_id=answer.id, rating=gateway_pb2.FEEDBACK_RATING_GOOD),
            metadata=md,
        )
        assert reply.response_id == answer.id and reply.rating == gateway_pb2.FEEDBACK_RATING_GOOD
        settle(gw)
        assert record(gw, answer.id).rating == "good"
        bad = [
            (gateway_pb2.SubmitFeedbackRequest(response_id="nope", rating=1), md, grpc.StatusCode.NOT_FOUND),
            (gateway_pb2.SubmitFeedbackRequest(response_id=answer.id), md, grpc.StatusCode.INVALID_ARGUMENT),
            (gateway_pb2.SubmitFeedbackRequest(response_id=answer.id, rating=7), md, grpc.StatusCode.INVALID_ARGUMENT),
            (gateway_pb2.SubmitFeedbackRequest(rating=1), md, grpc.StatusCode.INVALID_ARGUMENT),
            (gateway_pb2.SubmitFeedbackRequest(response_id=answer.id, rating=1), (), grpc.StatusCode.UNAUTHENTICATED),
        ]
        for req, metadata, code in bad:
            with pytest.raises(grpc.RpcError) as err:
                stub.SubmitFeedback(req, metadata=metadata)
            assert err.value.code() == code
        # a rating not set, or a number the enum does not have, said in gRPC's words (was: "rating must be one of
        # 'good', 'bad', got 'unspecified'" for both)
        for rating, got in ((0, "FEEDBACK_RATING_UNSPECIFIED (not set)"), (7, "7")):
            with pytest.raises(grpc.RpcError) as err:
                stub.SubmitFeedback(
                    gateway_pb2.SubmitFeedbackRequest(response_id=answer.id, rating=rating), metadata=md
                )
            assert err.value.details() == f"rating must be FEEDBACK_RATING_GOOD or FEEDBACK_RATING_BAD, got {got}"
        assert metric(gw, "ferryman_learning_feedback_total", outcome="invalid") == 5


def test_feedback_labels_in_export(fakes, judge, tmp_path):
    """Weak answers rated alone become labels with --labels judge+feedback (bad: strong wins; good: tie)."""
    url = sqlite_url(tmp_path)
    cfg = learning_config(fakes, judge, url, rate=0.0)
    with GatewayThread(cfg) as gw:
        client = sdk(gw)
        ids = [client.chat.completions.create(model="router-random-1.0", messages=MESSAGES).id for _ in range(1)]
        assert ids  # a router-<r>-<t> request is not a learning policy: not recorded
        r = httpx.post(gw.http_url + "/v1/feedback", json={"id": ids[0], "rating": "bad"}, headers=_auth())
        assert r.status_code == 404
        fakes["strong-openai"].reset(default=status(500))  # the strong tier fails over to weak: served weak
        fakes["strong-anthropic"].reset(default=status(500))
        _, weak_ids = send(gw, 2, expect=WEAK_TEXT)
        for rid, rating in zip(weak_ids, ["bad", "good"], strict=True):
            assert httpx.post(
                gw.http_url + "/v1/feedback", json={"id": rid, "rating": rating}, headers=_auth()
            ).is_success
        settle(gw)
    out = tmp_path / "out.jsonl"
    for labels, expected in (("judge", 0), ("judge+feedback", 2)):
        cmd = [
            sys.executable,
            "-m",
            "ferryman",
            "learn",
            "export",
            "--store",
            url,
            "--out",
            str(out),
            "--labels",
            labels,
        ]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(rows) == expected
    by_id = {r["id"]: r for r in rows}
    bad, good = by_id[weak_ids[0]], by_id[weak_ids[1]]
    assert bad["label_source"] == good["label_source"] == "feedback"
    assert (bad["winner_model_a"], good["winner_tie"]) == (1, 1)
    assert bad["model_a"] == "strong-openai" and bad["served"] == "model_b" and bad["response_a"] == '[""]'


# ----------------------------------------------------------------------------- replicas and metrics


def test_two_replicas_share_the_redis_store_and_the_budget(fakes, judge, redis_server, tmp_path):
    # replicas learn each other's spend from the store when they add their own and every prune_interval_s
    cfg = learning_config(fakes, judge, redis_server.url, budget=0.005, store_section={"prune_interval_s": 0.2})
    with GatewayThread(cfg) as a, GatewayThread(cfg) as b:
        for _ in range(20):  # replica A alone, until its budget runs out
            send(a, 1)
            settle(a)
            if metric(a, "ferryman_learning_requests_total", outcome="over_budget"):
                break
        shadowed = metric(a, "ferryman_learning_requests_total", outcome="shadowed")
        spent = gw_spend = a.call(a.gateway.learning.store.store.spend(time.strftime("%Y-%m-%d", time.gmtime())))
        assert shadowed >= 1 and 0 < spent <= 0.005
        time.sleep(2.0)  # a few of B's worker ticks
        send(b, 2)  # replica B has spent nothing itself, yet is over the shared budget
        settle(b)
        assert metric(b, "ferryman_learning_requests_total", outcome="shadowed") == 0
        assert metric(b, "ferryman_learning_requests_total", outcome="over_budget") == 2
        assert metric(b, "ferryman_learning_budget_spent_today_usd") == pytest.approx(gw_spend)
        records = a.call(a.gateway.learning.store.store.count())
        assert records == shadowed + 1 + 2  # every answer of both replicas recorded (feedback is on)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ferryman",
            "learn",
            "report",
            "--store",
            redis_server.url,
            "--json",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["records"] == records and report["verdicts"] == {"strong": shadowed}
    assert f"records: {records}" in done.stdout


def test_live_quality_gauges_with_a_scorer(fakes, judge, tmp_path, scorer_address):
    """Scored decisions and a judge whose verdicts are known: the gauges equal the definitions."""
    questions = [f"question {i}" for i in range(18)]
    # 12 strong-better, 6 ties: a net of 12 >= MIN_NET_STRONG_WINS, so PGR and the router's APGR are reported
    outcomes = {q: ("strong", "strong", "tie")[i % 3] for i, q in enumerate(questions)}
    judge.rule = by_question(outcomes)
    cfg = learning_config(fakes, judge, sqlite_url(tmp_path), shadow={"max_concurrent": 64})
    cfg = _with_scorer(cfg, scorer_address)
    with GatewayThread(cfg) as gw:
        client = sdk(gw)
        served: dict[str, str] = {}
        for q in questions:
            raw = client.chat.completions.with_raw_response.create(
                model=POLICY, messages=[{"role": "user", "content": q}]
            )
            assert raw.headers["x-ferryman-decision-source"] == "scored"
            served[q] = raw.headers["x-ferryman-served-tier"]
        settle(gw)
        items = []
        for rec in _all_records(gw):
            q = json.loads(rec.messages_json)[-1]["content"]
            assert rec.verdict == outcomes[q] and rec.served_tier == served[q] and rec.score is not None
            strong, weak = rec.costs()
            items.append(Judged(Verdict(rec.verdict), rec.served_tier, rec.score, strong, weak))
        expected = summarize(items)
        assert expected is not None and expected.n == 18
        assert metric(gw, "ferryman_learning_live_judged", policy=POLICY) == 18
        assert metric(gw, "ferryman_learning_live_quality_gap", policy=POLICY) == pytest.approx(expected.quality_gap)
        assert metric(gw, "ferryman_learning_live_savings", policy=POLICY) == pytest.approx(expected.savings)
        assert metric(gw, "ferryman_learning_live_strong_share", policy=POLICY) == pytest.approx(expected.strong_share)
        assert expected.router_apgr is not None and expected.pgr is not None
        apgr = metric(gw, "ferryman_learning_live_router_apgr", policy=POLICY)
        assert apgr == pytest.approx(expected.router_apgr)
        assert metric(gw, "ferryman_learning_live_pgr", policy=POLICY) == pytest.approx(expected.pgr)


def _with_scorer(cfg: Any, address: str) -> Any:
    from dataclasses import replace

    return replace(cfg, scorer=replace(cfg.scorer, target=f"dns:///{address}"))


def _all_records(gw: GatewayThread) -> list[Any]:
    async def collect() -> list[Any]:
        return [r async for r in gw.gateway.learning.store.store.scan()]

    return gw.call(collect())


# ----------------------------------------------------------------------------- the worker process


def test_worker_killed_mid_run_is_restarted(fakes, judge, tmp_path):
    fakes["weak-openai"].reset(default=slow(3))  # shadow calls in flight when the worker dies
    cfg = learning_config(fakes, judge, sqlite_url(tmp_path), feedback=False, shadow={"max_concurrent": 16})
    with GatewayThread(cfg) as gw:
        learning = gw.gateway.learning
        first, _ = send(gw, 2)
        deadline = time.monotonic() + 30
        while fakes["weak-openai"].requests < 2 and time.monotonic() < deadline:  # both shadow calls under way
            time.sleep(0.05)
        os.kill(learning.worker.pid, signal.SIGKILL)
        during, _ = send(gw, 4)  # served while the worker is dead or restarting
        while learning.worker.starts < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert learning.worker.starts == 2 and learning.worker.alive()
        fakes["weak-openai"].reset()
        settle(gw)  # every job handed over is reported by the new worker or counted lost
        lost = metric(gw, "ferryman_learning_shadow_calls_total", outcome="lost")
        after, ids = send(gw, 2)
        settle(gw)
        assert all(record(gw, rid).verdict == "strong" for rid in ids)  # the new worker shadows and stores
        shadowed = metric(gw, "ferryman_learning_requests_total", outcome="shadowed")
        done = metric(gw, "ferryman_learning_shadow_calls_total")
    tallies = [first, during, after]
    assert sum(t.sent for t in tallies) == sum(t.answered for t in tallies) == 8 and not any(t.lost for t in tallies)
    assert lost >= 2  # the two in flight when it died, and any handed to it before the restart was noticed
    assert done == shadowed == 8  # every shadow job ends reported (ok or timeout) or counted lost


def test_record_writes_a_killed_worker_had_not_made_are_counted_and_logged(fakes, judge, redis_server, caplog):
    """Answers recorded for feedback whose writes the worker still held when it died (here: the store frozen).
    Was: forgotten uncounted, and the log said "0 shadow jobs lost"."""
    cfg = learning_config(fakes, judge, redis_server.url, rate=0.0, store_section={"timeout_s": 30.0})
    with caplog.at_level(logging.ERROR, logger="gateway.learning.service"), GatewayThread(cfg) as gw:
        learning = gw.gateway.learning
        send(gw, 1)
        settle(gw)  # the worker has opened the store and written to it
        redis_server.process.proc.send_signal(signal.SIGSTOP)
        try:
            tally, _ = send(gw, 3)  # their writes hang in the worker
            deadline = time.monotonic() + 10
            while len(learning._pending) < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(learning.worker.pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while learning.worker.starts < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            redis_server.process.proc.send_signal(signal.SIGCONT)
        settle(gw)
        dropped = metric(gw, "ferryman_learning_store_ops_total", op="put", outcome="dropped")
    assert (tally.answered, tally.lost) == (3, 0)
    assert dropped == 3
    assert "; 0 shadow jobs and 3 record writes lost; restarting it in" in caplog.text, caplog.text


def test_jobs_answered_while_the_worker_restarts_hold_no_slot(fakes, judge, tmp_path, monkeypatch):
    """Answers that finish while the gateway replaces a dead worker (its old pipe closed, the new one not
    yet open) cannot be handed over: they hold no shadow slot or pending write and are counted lost.
    Was: dropped by the closed pipe but kept as in flight, their slots never freed (quiesce never
    returned; enough restarts and shadowing stopped for good)."""
    from gateway.learning.worker import LearningWorker

    cfg = learning_config(fakes, judge, sqlite_url(tmp_path), shadow={"max_concurrent": 16})
    restarting = threading.Event()
    close_pipes = LearningWorker._close_pipes

    async def slow_close(self: LearningWorker) -> None:
        await close_pipes(self)
        if self.starts == 1:  # the restart: the old pipes are closed, the new ones come in 1.5 s
            restarting.set()
            await asyncio.sleep(1.5)

    monkeypatch.setattr(LearningWorker, "_close_pipes", slow_close)
    with GatewayThread(cfg) as gw:
        learning = gw.gateway.learning
        send(gw, 2)
        settle(gw)
        os.kill(learning.worker.pid, signal.SIGKILL)
        assert restarting.wait(30)
        during, _ = send(gw, 3)  # answered in the gap
        deadline = time.monotonic() + 30
        while not (learning.worker.starts == 2 and learning.worker.alive()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gw.call(learning.quiesce(10), timeout=15), "jobs handed to no worker still hold their slots"
        after, ids = send(gw, 2)
        settle(gw)
        assert all(record(gw, rid).verdict == "strong" for rid in ids)
        shadowed = metric(gw, "ferryman_learning_requests_total", outcome="shadowed")
        done = metric(gw, "ferryman_learning_shadow_calls_total")
        lost = metric(gw, "ferryman_learning_shadow_calls_total", outcome="lost")
    assert during.answered == 3 and after.answered == 2 and not (during.lost or after.lost)
    assert done == shadowed == 7 and lost >= 3


def test_clients_are_answered_while_the_worker_process_starts(fakes, judge, tmp_path, monkeypatch):
    """Starting a new worker process (after one died) happens off the serving loop: with ``Process.start``
    made to take 3 s, requests sent meanwhile are answered before it returns. Was: called on the loop,
    which it blocked (a median 2.3-2.8 ms per start on the loaded VM, up to 8 ms) for every client."""
    from multiprocessing.process import BaseProcess

    cfg = learning_config(fakes, judge, sqlite_url(tmp_path))
    starting, started = threading.Event(), threading.Event()
    start, workers = BaseProcess.start, []

    def slow_start(self: BaseProcess) -> None:
        if self.name == "ferryman-learning-worker":
            workers.append(self)
        if len(workers) == 2 and workers[-1] is self:  # the restart
            starting.set()
            time.sleep(3.0)
        start(self)
        if starting.is_set():
            started.set()

    monkeypatch.setattr(BaseProcess, "start", slow_start)
    with GatewayThread(cfg) as gw:
        learning = gw.gateway.learning
        os.kill(learning.worker.pid, signal.SIGKILL)
        assert starting.wait(30)
        during, _ = send(gw, 3)  # whole and streamed
        answered_while_starting = not started.is_set()
        assert started.wait(30)
        deadline = time.monotonic() + 30
        while not (learning.worker.starts == 2 and learning.worker.alive()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gw.call(learning.quiesce(10), timeout=15)
        after, ids = send(gw, 2)
        settle(gw)
        assert all(record(gw, rid).verdict == "strong" for rid in ids)  # the new worker shadows and stores
    assert answered_while_starting, "client requests waited for the worker process to start"
    assert during.answered == 3 and after.answered == 2 and not (during.lost or after.lost)


def test_a_worker_start_cancelled_twice_keeps_the_child_ends_open_until_spawned(fakes, judge, tmp_path, monkeypatch):
    """A worker start cancelled while its thread spawns the process (a shutdown during a restart), then
    cancelled again (that shutdown itself cancelled or timed out): the pipe ends the spawn hands to the
    child stay open until ``Process.start`` is done with them, and the process it started exits (end of
    file on its jobs). Was: the second cancellation closed them under the thread: ``Process.start``
    failed on a closed handle (or, had a new file taken the number meanwhile, gave the child that file)."""
    from multiprocessing.process import BaseProcess

    from gateway.learning.worker import LearningWorker

    in_start, spawned, start, outcome = threading.Event(), threading.Event(), BaseProcess.start, []

    def slow_start(self: BaseProcess) -> None:
        in_start.set()
        time.sleep(1.0)
        try:
            start(self)
        except BaseException as exc:
            outcome.append(exc)
            raise
        finally:
            spawned.set()
        outcome.append(None)

    monkeypatch.setattr(BaseProcess, "start", slow_start)
    worker = LearningWorker(learning_config(fakes, judge, sqlite_url(tmp_path)), {}, lambda report: None)

    async def main() -> None:
        starting = asyncio.create_task(worker.start())
        assert await asyncio.to_thread(in_start.wait, 30)
        for _ in range(2):
            starting.cancel()
            await asyncio.sleep(0.1)
        with pytest.raises(asyncio.CancelledError):
            await starting

    asyncio.run(asyncio.wait_for(main(), 60))
    assert spawned.wait(30) and outcome == [None], f"Process.start failed: {outcome}"
    assert asyncio.run(worker.wait_exited(30))
    assert worker.exitcode == 0  # its jobs pipe closed: it stopped by itself
    assert worker.starts == 0


def test_a_worker_restart_that_fails_is_tried_again(fakes, judge, tmp_path, monkeypatch, caplog):
    """A new worker process that cannot be started (here ``Process.start`` raises once, as on EAGAIN or
    too many open files) is logged and tried again at the next check. Was: the exception ended the
    gateway's watch task, so the worker was never restarted and learning stopped for good, silently."""
    from multiprocessing.process import BaseProcess

    cfg = learning_config(fakes, judge, sqlite_url(tmp_path))
    start, calls = BaseProcess.start, []

    def failing_once(self: BaseProcess) -> None:
        if self.name == "ferryman-learning-worker":
            calls.append(self)
            if len(calls) == 2:
                raise OSError(11, "Resource temporarily unavailable")
        start(self)

    monkeypatch.setattr(BaseProcess, "start", failing_once)
    with GatewayThread(cfg) as gw:
        learning = gw.gateway.learning
        os.kill(learning.worker.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not (learning.worker.starts == 2 and learning.worker.alive()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert learning.worker.starts == 2 and learning.worker.alive(), "the worker was not started again"
        after, ids = send(gw, 2)
        settle(gw)
        assert all(record(gw, rid).verdict == "strong" for rid in ids)  # the third process shadows and stores
    assert len(calls) == 3 and after.answered == 2 and not after.lost
    assert "could not start a new learning worker" in caplog.text


def test_a_worker_that_cannot_start_is_tried_again_less_and_less_often(fakes, judge, tmp_path, monkeypatch, caplog):
    """Starts that keep failing are retried after 1, 2, 4 ... s (at most 60), not at every 0.5 s check with
    an ERROR and a traceback each time; once a start works again the worker shadows. Was: a try, and a
    logged traceback, every 0.5 s for as long as starting failed."""
    from multiprocessing.process import BaseProcess

    cfg = learning_config(fakes, judge, sqlite_url(tmp_path))
    start, calls, failing = BaseProcess.start, [], threading.Event()

    def refused(self: BaseProcess) -> None:
        if self.name == "ferryman-learning-worker":
            calls.append(time.monotonic())
            if failing.is_set():
                raise OSError(24, "Too many open files")
        start(self)

    monkeypatch.setattr(BaseProcess, "start", refused)
    with GatewayThread(cfg) as gw:
        learning = gw.gateway.learning
        failing.set()
        os.kill(learning.worker.pid, signal.SIGKILL)
        time.sleep(5.0)
        tries = calls[1:]
        # the death is noticed within 0.5 s, the first start 1 s later, the next 2 s after that, then 4 s
        assert 1 <= len(tries) <= 3, [round(t - calls[0], 2) for t in calls]
        assert all(b - a >= 1.9 for a, b in itertools.pairwise(tries)), tries
        failing.clear()
        deadline = time.monotonic() + 30
        while not learning.worker.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert learning.worker.alive(), "the worker was not started again once starting worked"
        after, ids = send(gw, 2)
        settle(gw)
        assert all(record(gw, rid).verdict == "strong" for rid in ids)
    assert after.answered == 2 and not after.lost
    assert "trying again in 2.0 s" in caplog.text


def test_restart_backoff_doubles_after_quick_deaths_and_failed_starts_and_resets_after_a_healthy_run():
    from gateway.learning.service import RestartBackoff

    b = RestartBackoff(base_s=1.0, max_s=8.0, healthy_s=30.0)
    assert b.died(ran_s=3600.0, now=100.0) == 0.0 and b.due(100.0)  # a long run: replaced at once
    assert b.died(ran_s=2.0, now=200.0) == 1.0 and not b.due(200.5) and b.due(201.0)
    assert [b.start_failed(now=300.0) for _ in range(4)] == [2.0, 4.0, 8.0, 8.0]  # capped
    assert b.died(ran_s=31.0, now=400.0) == 0.0  # a healthy run resets the wait


def test_hand_off_to_the_worker_runs_on_the_loop(fakes, judge, tmp_path, monkeypatch, caplog):
    """Jobs go to the worker and reports come back through pipes the event loop reads and writes: no
    feeder or reader thread in the serving process. A job that cannot be handed over (pickling fails)
    holds no slot, budget or pending write, is counted lost, and clients never notice."""
    cfg = learning_config(fakes, judge, sqlite_url(tmp_path), shadow={"max_concurrent": 4})
    with GatewayThread(cfg) as gw:
        learning = gw.gateway.learning
        threads_before = {t.name for t in threading.enumerate()}
        first, ids = send(gw, 4)
        settle(gw)
        assert all(record(gw, rid).verdict == "strong" for rid in ids)
        new_threads = {t.name for t in threading.enumerate()} - threads_before
        assert not new_threads, new_threads

        def refuse(self: object, protocol: int) -> object:
            raise pickle.PicklingError("not today")

        with monkeypatch.context() as m:
            m.setattr(Job, "__reduce_ex__", refuse)
            refused, _ = send(gw, 6)  # more than max_concurrent: slots that leaked would refuse later jobs
            # (the hand-off runs after each response: the last one's may still be due)
            assert gw.call(learning.quiesce(5), timeout=10)  # nothing left in flight
        assert learning.admission.inflight == 0 and learning.admission.budget.reserved == 0
        lost = metric(gw, "ferryman_learning_shadow_calls_total", outcome="lost")
        dropped = metric(gw, "ferryman_learning_store_ops_total", op="put", outcome="dropped")
        after, ids = send(gw, 4)
        settle(gw)
        assert all(record(gw, rid).verdict == "strong" for rid in ids)  # shadowing goes on
        assert metric(gw, "ferryman_learning_requests_total", outcome="saturated") == 0
    tallies = [first, refused, after]
    assert sum(t.sent for t in tallies) == sum(t.answered for t in tallies) == 14 and not any(t.lost for t in tallies)
    assert lost == 6 and dropped == 6
    assert "learning: observing an answer failed" in caplog.text


@pytest.mark.parametrize("stream", [False, True])
def test_the_hand_off_runs_after_the_response(fakes, judge, tmp_path, monkeypatch, stream):
    """Sampling and the hand-off to the worker run in the loop's next turn, after the response is sent: a
    hand-off made to take 1.5 s (pickling the job sleeps) does not delay the client, and the job still goes to
    the worker. Was: the client waited for it, whole answers and a stream's end alike."""
    cfg = learning_config(fakes, judge, sqlite_url(tmp_path))
    with GatewayThread(cfg) as gw:
        send(gw, 2)  # warm: connections open, the worker started
        settle(gw)
        pickled = Job.__reduce_ex__

        def slow_pickle(self: Job, protocol: Any) -> Any:
            time.sleep(1.5)
            return pickled(self, protocol)

        with monkeypatch.context() as m:
            m.setattr(Job, "__reduce_ex__", slow_pickle)
            started = time.monotonic()
            if stream:
                chunks = list(sdk(gw).chat.completions.create(model=POLICY, messages=MESSAGES, stream=True))
                text, rid = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks[0].id
            else:
                answer = sdk(gw).chat.completions.create(model=POLICY, messages=MESSAGES)
                text, rid = answer.choices[0].message.content or "", answer.id
            took = time.monotonic() - started
            settle(gw)  # waits for the hand-off too (quiesce counts observed answers not yet handed over)
        assert STRONG_TEXT in text and took < 1.0, took
        assert record(gw, rid).verdict == "strong"  # shadowed, judged and stored


def test_a_job_the_worker_cannot_read_frees_its_slot(fakes, judge, tmp_path, monkeypatch):
    """A job that pickles in the gateway but cannot be unpickled in the worker (here: its pickle calls
    int("not a job") there) is reported back by its response id: its slot, budget and pending write are
    freed, it is counted lost / dropped, and shadowing goes on. Was: the worker skipped it silently, so it
    held its slot until the next worker restart (enough of them and shadowing stopped for good)."""
    cfg = learning_config(fakes, judge, sqlite_url(tmp_path), shadow={"max_concurrent": 4})
    with GatewayThread(cfg) as gw:
        learning = gw.gateway.learning
        with monkeypatch.context() as m:
            m.setattr(Job, "__reduce_ex__", lambda self, protocol: (int, ("not a job",)))
            unreadable, _ = send(gw, 6)  # more than max_concurrent: slots that leaked would refuse later jobs
        assert gw.call(learning.quiesce(10), timeout=15), "jobs the worker could not read still hold their slots"
        assert learning.admission.inflight == 0 and learning.admission.budget.reserved == 0
        shadowed = metric(gw, "ferryman_learning_requests_total", outcome="shadowed")
        lost = metric(gw, "ferryman_learning_shadow_calls_total", outcome="lost")
        dropped = metric(gw, "ferryman_learning_store_ops_total", op="put", outcome="dropped")
        saturated = metric(gw, "ferryman_learning_requests_total", outcome="saturated")
        after, ids = send(gw, 4)
        settle(gw)
        assert all(record(gw, rid).verdict == "strong" for rid in ids)  # the same worker shadows and stores
        # (some of the 6 may have found the 4 slots taken before the worker's first report came back)
        assert metric(gw, "ferryman_learning_requests_total", outcome="saturated") == saturated
        assert learning.worker.starts == 1
    assert unreadable.answered == 6 and after.answered == 4 and not (unreadable.lost or after.lost)
    assert shadowed >= 4 and lost == shadowed and dropped == 6  # every job read by no one is counted


def test_the_worker_logs_at_the_gateways_level(fakes, judge, tmp_path, caplog, capfd):
    """The worker's INFO lines (store pruning) reach the gateway's log when it runs at INFO. Was: the worker
    logged at WARNING whatever the gateway's level, so `ferryman up` never showed its retention deletes."""
    caplog.set_level(logging.INFO)  # the gateway's root level, as `--log-level INFO` sets it
    store = {"max_records": 2, "prune_interval_s": 0.2}
    cfg = learning_config(fakes, judge, sqlite_url(tmp_path), store_section=store)
    with GatewayThread(cfg) as gw:
        send(gw, 4)
        settle(gw)
        time.sleep(1.0)  # a prune or more
    err = capfd.readouterr().err  # the worker process writes to the stderr it inherited
    assert "INFO learning-worker gateway.learning.worker: learning store: 2 records past retention" in err, err


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_the_store_is_pruned_once_a_burst_passes_its_cap(fakes, judge, tmp_path, request, backend):
    """Was: the size cap applied only every prune_interval_s, so a burst stayed above max_records until then
    (here 24 records at max_records 10 for the hour of the interval; at the default 60 s, 60 s of records).
    Now a prune starts once store.prune_after_puts (1 % of the cap, at least 1) new records were written."""
    url = sqlite_url(tmp_path) if backend == "sqlite" else request.getfixturevalue("redis_server").url
    store = {"max_records": 10, "prune_interval_s": 3600}
    cfg = learning_config(fakes, judge, url, rate=0.0, store_section=store)
    assert cfg.learning.store.prune_after_puts == 1
    with GatewayThread(cfg) as gw:
        _, ids = send(gw, 24)
        settle(gw)
        deadline = time.monotonic() + 10  # the prune the last writes started
        while (count := gw.call(gw.gateway.learning.store.store.count())) > 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert count == 10
        assert {r.id for r in _all_records(gw)} == set(ids[-10:])  # the oldest went


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
@pytest.mark.parametrize("idle", [True, False])
def test_worker_priority(fakes, judge, tmp_path, idle, caplog):
    # niceness 10 by default; learning.worker_sched_idle: SCHED_IDLE as well (docs/learning.md)
    cfg = learning_config(fakes, judge, sqlite_url(tmp_path), worker_nice=10, worker_sched_idle=idle)
    with caplog.at_level(logging.WARNING, logger="gateway.learning.service"), GatewayThread(cfg) as gw:
        # the start-up line says how the worker gives way to serving
        started = next(r.getMessage() for r in caplog.records if "learning from traffic is ON" in r.getMessage())
        assert f'"worker_nice": 10, "worker_sched_idle": {str(idle).lower()}' in started
        pid = gw.gateway.learning.worker.pid
        assert pid is not None
        want = (os.SCHED_IDLE if idle else os.SCHED_OTHER, min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10))

        def priority() -> tuple[int, int]:
            return os.sched_getscheduler(pid), os.getpriority(os.PRIO_PROCESS, pid)

        deadline = time.monotonic() + 30  # the worker sets its own priority as it starts
        while priority() != want and time.monotonic() < deadline:
            time.sleep(0.05)
        assert priority() == want
        tally, ids = send(gw, 2)  # and it still shadows and stores
        settle(gw)
        assert tally.answered == 2 and all(record(gw, rid).verdict == "strong" for rid in ids)


@pytest.mark.parametrize(("gateway_nice", "says"), [(0, None), (15, "only 4 below"), (19, "only 0 below")])
def test_a_worker_that_cannot_give_way_as_configured_says_so(gateway_nice, says):
    """learning.worker_nice is added to the gateway's niceness, which caps at 19: under a gateway already at
    15 the worker gets 19, 4 steps below serving instead of 10, and under one at 19 none. Was: silent (only an
    os.nice failure was logged); now the worker logs the niceness it got and its gateway's."""
    code = (
        "import logging, os; logging.basicConfig(level=logging.WARNING)\n"
        "from gateway.learning.worker import give_way\n"
        "give_way(10); print('niceness', os.nice(0))"
    )
    done = subprocess.run(
        ["nice", "-n", str(gateway_nice), sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert f"niceness {min(19, gateway_nice + 10)}" in done.stdout
    if says is None:
        assert "learning.worker_nice" not in done.stderr, done.stderr
    else:
        assert f"learning.worker_nice: the worker runs at niceness 19, {says} its gateway's {gateway_nice}" in (
            done.stderr
        ), done.stderr


def test_a_worker_niceness_refused_by_the_os_is_logged(monkeypatch, caplog):
    from gateway.learning import worker

    def refuse(increment: int) -> int:  # e.g. a seccomp profile that forbids setpriority
        if increment:
            raise PermissionError(1, "Operation not permitted")
        return 0

    monkeypatch.setattr(worker.os, "nice", refuse)
    with caplog.at_level(logging.WARNING, logger="gateway.learning.worker"):
        worker.give_way(10)
    assert "learning.worker_nice: could not lower the worker's priority" in caplog.text, caplog.text


def test_worker_exits_when_its_gateway_is_killed(fakes, judge, tmp_path):
    import yaml

    from harness.gateway import ENV
    from harness.processes import children as children_of
    from harness.processes import read_json, spawn, wait_for

    data = {
        "models": {
            name: {"provider": "openai", "base_url": f.base_url, "price_in_per_mtok": 1, "price_out_per_mtok": 2}
            for name, f in {**fakes, "judge-local": judge}.items()
        },
        "tiers": {"strong": {"models": ["strong-openai"]}, "weak": {"models": ["weak-openai"]}},
        "policies": {POLICY: {"router": "random", "threshold": 0.5}},
        "scorer": {"target": "dns:///127.0.0.1:1"},
        "server": {"grpc_host": "127.0.0.1", "grpc_port": 0, "http_host": "127.0.0.1", "http_port": 0},
        "admin": {"host": "127.0.0.1", "port": 0},  # not the default 9091: a gateway running beside the tests has it
        "auth": {"disabled": True},
        "learning": {
            "policies": [POLICY],
            "store": {"url": sqlite_url(tmp_path)},
            "shadow": {"sample_rate": 1.0, "daily_budget_usd": 1.0},
            "judge": {"model": "judge-local"},
        },
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data))
    argv = [sys.executable, "-m", "ferryman", "gateway", "--config", str(path), "--port-file", str(tmp_path / "p.json")]
    gateway = spawn("gateway", argv, tmp_path, dict(ENV))
    try:
        wait_for("gateway", lambda: read_json(tmp_path / "p.json"), 60, gateway.proc)
        # the learning worker (and multiprocessing's resource tracker)
        children = wait_for("worker", lambda: children_of(gateway.proc.pid), 60, gateway.proc)
        gateway.proc.kill()
        gateway.proc.wait(10)
        wait_for("children exit", lambda: not any(_alive(c) for c in children), 10)
    finally:
        gateway.stop()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_worker_restart_benchmark_prints_its_figures(capsys):
    """``ferryman bench worker-restart`` (the figures in docs/learning.md) runs and prints each column."""
    import argparse

    from bench.worker_restart import run

    assert run(argparse.Namespace(restarts=2)) == 0
    out = capsys.readouterr().out
    assert "restart 2/2: Process.start" in out
    for name in ("Process.start", "loop stall, restart", "loop stall, idle"):
        assert f"{name}: median" in out


def test_ctrl_c_stops_a_learning_gateway_and_its_worker_cleanly(fakes, judge, tmp_path):
    """Ctrl-C in a terminal sends SIGINT to the whole process group, the learning worker included: it died
    at once with a KeyboardInterrupt traceback, and the stopping gateway logged it as a crash ('the learning
    worker exited (code 1) ...; restarting it') instead of stopping it with its drain."""
    from harness.processes import children, read_json, scrape

    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps(learning_config_dict(fakes, judge, sqlite_url(tmp_path))))
    port_file = tmp_path / "ports.json"
    argv = [sys.executable, "-m", "ferryman", "gateway", "--config", str(config), "--port-file", str(port_file)]
    argv += ["--grpc-port", "0", "--http-port", "0", "--admin-port", "0"]
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:  # its own process group, as a terminal's foreground job is
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ | ENV | {"TEST_CLIENT_KEYS": CLIENT_KEY},
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60

        while not (ports := read_json(port_file)):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        body = {"model": POLICY, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"authorization": f"Bearer {CLIENT_KEY}"}
        answer = httpx.post(f"http://127.0.0.1:{ports['http_port']}/v1/chat/completions", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
        # the worker is running: it has shadowed that request and reported it
        while not scrape(ports["admin_port"], "ferryman_learning_shadow_calls_total", outcome="ok"):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        worker = children(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "Traceback" not in text and "learning worker exited" not in text, text

    def running(pid: int) -> bool:  # an exited child its new parent has not reaped yet is a zombie ("Z")
        try:
            return Path(f"/proc/{pid}/stat").read_text(errors="replace").split(") ")[-1][:1] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 10
    while any(running(pid) for pid in worker):
        assert time.monotonic() < deadline, worker
        time.sleep(0.1)
