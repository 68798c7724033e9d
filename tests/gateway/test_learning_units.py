"""Learning's plain parts: the config section, verdict parsing, the quality figures, the budget,
redaction, and the export's labels (no servers; the end-to-end tests are in test_learning_gateway)."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.learning.config import RedactConfig, RedactRule
from gateway.learning.export import arena_row, label
from gateway.learning.judge import build_prompt, combine, parse_verdict
from gateway.learning.quality import MIN_NET_STRONG_WINS, Judged, router_apgr, summarize
from gateway.learning.records import Record, Verdict
from gateway.learning.redact import RedactionError, Redactor
from gateway.learning.shadow import Admission, Budget
from gateway.types import Message


def _config(learning: Any) -> dict[str, Any]:
    model = {"provider": "openai", "base_url": "http://x/v1", "price_in_per_mtok": 1, "price_out_per_mtok": 2}
    return {
        "models": {"s": model, "w": model, "j": model},
        "tiers": {"strong": {"models": ["s"]}, "weak": {"models": ["w"]}},
        "policies": {"p": {"router": "mf", "threshold": 0.5}},
        "learning": learning,
    }


def test_learning_is_off_by_default():
    cfg = parse_config(_config(None))
    assert not cfg.learning.enabled and cfg.learning.policies == ()
    # policies alone turn nothing on: shadowing or feedback must be asked for too
    assert not parse_config(_config({"policies": ["p"]})).learning.enabled


def test_learning_config_parses():
    cfg = parse_config(
        _config(
            {
                "policies": ["p"],
                "shadow": {"sample_rate": 0.2, "daily_budget_usd": 5, "opt_out_tenants": ["t-0123456789abcdef"]},
                "judge": {"model": "j", "on_inconsistent": "discard"},
                "feedback": {"enabled": True},
                "store": {"url": "redis://r:6379/0", "retention_days": 7, "max_records": 10},
                "redact": {"rules": [{"pattern": r"\d+"}]},
            }
        )
    ).learning
    assert cfg.enabled and cfg.shadow.sample_rate == 0.2 and cfg.shadow.opt_out_tenants == {"t-0123456789abcdef"}
    assert cfg.judge.on_inconsistent == "discard" and cfg.store.max_records == 10
    assert cfg.redact.rules[0].replace == "[redacted]"


@pytest.mark.parametrize(
    ("learning", "message"),
    [
        ({"policies": ["nope"]}, "learning.policies: 'nope' is not defined"),
        ({"policies": ["p"], "shadow": {"sample_rate": 0.1, "daily_budget_usd": 1}}, "learning.judge.model: required"),
        (
            {"policies": ["p"], "shadow": {"sample_rate": 0.1, "daily_budget_usd": 1}, "judge": {"model": "x"}},
            "'x' is not defined under models",
        ),
        ({"policies": ["p"], "shadow": {"sample_rate": 0.1}, "judge": {"model": "j"}}, "daily_budget_usd: required"),
        ({"shadow": {"sample_rate": 1.5}}, "learning.shadow.sample_rate: must be in [0, 1]"),
        ({"judge": {"on_inconsistent": "coin"}}, "on_inconsistent: must be 'tie' or 'discard'"),
        ({"redact": {"rules": [{"pattern": "("}]}}, "learning.redact.rules[0].pattern: not a valid"),
        ({"redact": {"callable": "not a path"}}, "expected 'package.module:function'"),
        ({"store": {"max_records": 0}}, "learning.store.max_records: must be > 0"),
        ({"shadow": {"opt_out_tenants": "t-1"}}, "expected a list of tenant ids"),
        ({"shadow": {"max_queued": -1}}, "learning.shadow.max_queued: must be >= 0, got -1"),
        ({"shadow": {"max_queued": 2.5}}, "learning.shadow.max_queued: expected int, got 2.5"),
        ({"shadow": {"max_queued": True}}, "learning.shadow.max_queued: expected int, got True"),
        ({"surprise": 1}, "learning: unknown field(s) surprise"),
        ({"store": {"uri": "x"}}, "learning.store: unknown field(s) uri"),
    ],
)
def test_learning_config_errors_name_the_field(learning, message):
    with pytest.raises(ConfigError) as err:
        parse_config(_config(learning))
    assert message in str(err.value)


# ----------------------------------------------------------------------------- the judge


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("Reasoning... [[A]]", "A"),
        ("[[B]]", "B"),
        ("tie: [[C]]", "C"),
        ("[[A]] and again [[A]]", "A"),
        ("[[A]] ... no, [[B]]", "invalid"),
        ("Assistant A is better.", "invalid"),
        ("[A]", "invalid"),
        ("[[a]]", "invalid"),
        ("[[D]]", "invalid"),
        ("", "invalid"),
    ],
)
def test_parse_verdict_is_strict(text, verdict):
    assert parse_verdict(text) == verdict


@pytest.mark.parametrize(
    ("first", "second", "on_inconsistent", "verdict"),
    [
        ("strong", "strong", "tie", Verdict.STRONG),
        ("weak", "weak", "tie", Verdict.WEAK),
        ("tie", "tie", "tie", Verdict.TIE),
        ("strong", "weak", "tie", Verdict.TIE),
        ("strong", "tie", "tie", Verdict.TIE),
        ("strong", "weak", "discard", Verdict.INCONSISTENT),
        ("tie", "weak", "discard", Verdict.INCONSISTENT),
        ("strong", "invalid", "tie", Verdict.INVALID),
        ("error", "invalid", "tie", Verdict.ERROR),
    ],
)
def test_combine_both_orders(first, second, on_inconsistent, verdict):
    assert combine(first, second, on_inconsistent) is verdict


def test_judge_prompt_shows_context_question_and_both_answers():
    messages = (
        Message("system", "Be brief."),
        Message("user", "Hi"),
        Message("assistant", "Hello!"),
        Message("user", "What is 2+2?"),
    )
    prompt = build_prompt(messages, "four", "4")
    assert "[System Instructions Given to the Assistants]\nBe brief." in prompt
    assert "[Conversation History]\nUser: Hi\nAssistant: Hello!" in prompt
    assert "[User Question]\nWhat is 2+2?" in prompt
    assert prompt.index("Assistant A's Answer]\nfour\n") < prompt.index("Assistant B's Answer]\n4\n")
    single = build_prompt((Message("user", "Q"),), "a", "b")
    assert single.startswith("[User Question]\nQ\n\n") and "History" not in single


# ----------------------------------------------------------------------------- quality figures


def _j(verdict: str, served: str, score: float | None = None, strong: float = 10.0, weak: float = 1.0) -> Judged:
    return Judged(Verdict(verdict), served, score, strong, weak)


def test_summary_by_hand():
    items = [
        _j("strong", "strong", 0.9),  # strong better, sent strong: +1 recovered
        _j("strong", "weak", 0.2),  # strong better, sent weak: the loss
        _j("tie", "weak", 0.1),
        _j("weak", "weak", 0.3),
    ]
    r = summarize(items)
    assert r is not None
    assert r.n == 4 and r.strong_share == 0.25
    assert r.quality_strong == pytest.approx((1 + 1 + 0.5 + 0) / 4)
    assert r.quality_weak == pytest.approx(1 - r.quality_strong)
    assert r.quality_policy == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert r.quality_gap == pytest.approx(r.quality_strong - r.quality_policy)
    assert r.pgr is None  # a net of 1 strong-better verdict: too few to divide by (MIN_NET_STRONG_WINS)
    wide = summarize([*items, *[_j("strong", "strong", 0.8)] * MIN_NET_STRONG_WINS])
    assert wide is not None and wide.pgr is not None
    assert wide.pgr == pytest.approx(
        (wide.quality_policy - wide.quality_weak) / (wide.quality_strong - wide.quality_weak)
    )
    assert r.savings == pytest.approx(1 - (10 + 1 + 1 + 1) / 40)
    assert summarize([]) is None


def test_router_apgr_perfect_inverse_and_random():
    gains = ["strong"] * 30 + ["tie"] * 40 + ["weak"] * 10
    perfect = [_j(v, "weak", score=-i) for i, v in enumerate(gains)]  # strong wins scored highest
    inverse = [_j(v, "weak", score=i) for i, v in enumerate(gains)]
    apgr_perfect, apgr_inverse = router_apgr(perfect), router_apgr(inverse)
    assert apgr_perfect is not None and apgr_inverse is not None
    assert apgr_perfect > 0.9 and apgr_inverse < 0.1
    rng = random.Random(0)
    randoms = [router_apgr([_j(v, "weak", score=rng.random()) for v in gains]) for _ in range(200)]
    mean = sum(r for r in randoms if r is not None) / len(randoms)
    assert mean == pytest.approx(0.5, abs=0.05)
    # undefined when strong is not better on this traffic, or nothing is scored
    assert router_apgr([_j("weak", "weak", 0.5), _j("strong", "weak", 0.1)]) is None
    # ... or better by too few verdicts: a net of 2 on tie-heavy traffic gave an "APGR" of ~2 (was reported)
    rng = random.Random(1)
    tie_heavy = [_j(v, "weak", score=rng.random()) for v in ["strong"] * 3 + ["tie"] * 60 + ["weak"]]
    assert router_apgr(tie_heavy) is None
    assert router_apgr([_j("strong", "weak", None)]) is None


# ----------------------------------------------------------------------------- budget, redaction


def test_budget_reserves_settles_shares_and_rolls_over():
    now = [1_700_000_000.0]  # 2023-11-14 22:13 UTC
    budget = Budget(1.0, clock=lambda: now[0])
    assert budget.reserve(0.6) and not budget.reserve(0.6)  # reservations count
    budget.settle(0.6, 0.2)
    assert budget.spent == pytest.approx(0.2) and budget.reserve(0.6)
    budget.settle(0.6, 0.3)
    budget.observe_total(budget.day, 0.9)  # other replicas spent more: their total is known now
    assert budget.spent == 0.9 and not budget.reserve(0.2)
    budget.observe_total("2000-01-01", 5.0)  # another day's total is ignored
    assert budget.spent == 0.9
    now[0] += 2 * 3600  # past midnight UTC
    assert budget.reserve(0.9) and budget.day == "2023-11-15"


def _admission(budget_usd: float = 100.0, **shadow: Any) -> Admission:
    section = {"sample_rate": 1.0, "daily_budget_usd": budget_usd} | shadow
    return Admission(parse_config(_config({"policies": ["p"], "shadow": section, "judge": {"model": "j"}})))


def test_admission_admits_max_concurrent_plus_max_queued_then_sheds():
    learning = parse_config(_config(None)).learning
    assert learning.shadow.max_queued == 48 and learning.worker_sched_idle  # the defaults (lab log 2026-12-05 18:02)
    old = _admission(max_concurrent=2, max_queued=0)
    assert [old.admit(1.0, True) for _ in range(3)] == ["shadowed", "shadowed", "saturated"]
    admission = _admission(max_concurrent=2, max_queued=3)
    outcomes = [admission.admit(1.0, True) for _ in range(6)]
    assert outcomes == ["shadowed"] * 5 + ["saturated"]  # 2 run, 3 wait, the sixth is shed
    assert admission.inflight == 5 and admission.budget.reserved == 5.0  # waiting jobs hold their reservation
    admission.done(1.0, 0.5)  # one ends: a slot for the next sample
    assert admission.admit(1.0, True) == "shadowed" and admission.admit(1.0, True) == "saturated"


def test_waiting_jobs_count_against_the_daily_budget():
    admission = _admission(budget_usd=3.5, max_concurrent=1, max_queued=10)
    outcomes = [admission.admit(1.0, True) for _ in range(4)]
    assert outcomes == ["shadowed"] * 3 + ["over_budget"]  # 1 running + 2 waiting reserve 3 of 3.5


def test_redactor_rules_callable_and_cut(monkeypatch, tmp_path):
    module = tmp_path / "redact_mod.py"
    module.write_text("def up(t):\n    return t.upper()\n\ndef boom(t):\n    raise ValueError(t)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    rules = (RedactRule(re.compile(r"[\w.]+@[\w.]+"), "[email]"),)
    assert Redactor(RedactConfig(rules, "redact_mod:up"), 100)("mail a.b@c.d now") == "MAIL [EMAIL] NOW"
    assert Redactor(RedactConfig(), 5)("abcdefgh") == "abcde"
    failing = Redactor(RedactConfig((), "redact_mod:boom"), 100)
    with pytest.raises(RedactionError) as err:
        failing("secret text")
    assert "secret" not in str(err.value)  # the text never reaches a log
    for target in ("redact_mod:missing", "no_such_module_xyz:f"):
        with pytest.raises(ConfigError):
            Redactor(RedactConfig((), target), 100)


# ----------------------------------------------------------------------------- export labels


def _record(**fields: Any) -> Record:
    base = dict(id="r", created_at=1.0, tenant="t", policy="p", messages_json="[]", served_model="s", shadow_model="w")
    return Record(**(base | fields))


@pytest.mark.parametrize(
    ("fields", "with_feedback", "expected"),
    [
        ({"verdict": "strong", "served_tier": "weak"}, False, ("model_a", "judge")),
        ({"verdict": "weak", "served_tier": "strong"}, False, ("model_b", "judge")),
        ({"verdict": "tie", "served_tier": "strong", "rating": "bad"}, True, ("tie", "judge")),
        ({"verdict": "invalid", "served_tier": "weak"}, False, None),
        ({"verdict": "", "served_tier": "weak", "rating": "bad"}, False, None),
        ({"verdict": "", "served_tier": "weak", "rating": "bad"}, True, ("model_a", "feedback")),
        ({"verdict": "", "served_tier": "weak", "rating": "good"}, True, ("tie", "feedback")),
        ({"verdict": "error", "served_tier": "strong", "rating": "bad"}, True, None),  # nothing known of weak
    ],
)
def test_export_labels(fields, with_feedback, expected):
    assert label(_record(**fields), with_feedback) == expected


def test_export_row_puts_strong_first_and_turns_in_lists():
    record = _record(
        served_tier="weak",
        served_model="cheap",
        shadow_model="dear",
        served_router_model="",
        shadow_router_model="gpt-4-1106-preview",
        served_answer="w",
        shadow_answer="s",
        messages_json='[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"}]',
        served_cost_usd=1.0,
        shadow_cost_usd=9.0,
    )
    row = arena_row(record, "model_a", "judge", "router")
    assert (row["model_a"], row["model_b"]) == ("gpt-4-1106-preview", "cheap")
    assert row["prompt"] == '["a", "c"]' and row["response_a"] == '["b", "s"]' and row["response_b"] == '["b", "w"]'
    assert (row["cost_a_usd"], row["cost_b_usd"], row["served"]) == (9.0, 1.0, "model_b")
    assert arena_row(record, "tie", "judge", "config")["model_a"] == "dear"


def test_tenant_id_command_reads_keys_from_stdin():
    import subprocess
    import sys

    from gateway.learning.tenants import tenant_id

    done = subprocess.run(
        [sys.executable, "-m", "ferryman", "learn", "tenant-id"],
        input="key-one\n\n  key-two  \n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.split() == [tenant_id("key-one"), tenant_id("key-two")]
    assert tenant_id("key-one").startswith("t-") and len(tenant_id("key-one")) == 18
    assert "key-one" not in done.stdout


def test_budget_reserves_nothing_once_every_job_has_settled():
    """Float sums of reservations do not return to 0 by themselves (6 jobs left 1.7e-18 reserved, so a
    gateway never read as idle); with no job holding a reservation, nothing is reserved."""
    budget = Budget(10.0)
    estimates = [0.1] * 6  # reserved then settled one by one: 2.8e-17 left before
    assert all(budget.reserve(e) for e in estimates)
    for e in estimates[:-1]:
        budget.settle(e, e / 2)
    assert budget.reserved == pytest.approx(0.1)  # the last job still holds its own
    budget.settle(0.1, 0.05)
    assert budget.reserved == 0.0 and budget.spent == pytest.approx(0.3)
