"""OpenAI-compatible HTTP API, driven by the official openai SDK and raw HTTP (real servers)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.gateway import CLIENT_KEY, PROVIDER_KEY, GatewayThread, gateway_config


@pytest.fixture
def gw(fakes):
    with GatewayThread(gateway_config(fakes)) as running:
        yield running


def sdk(gw: GatewayThread, key: str = CLIENT_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.http_url + "/v1", api_key=key, max_retries=0, timeout=10)


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}]


@pytest.mark.parametrize("model", ["strong-openai", "weak-anthropic"])
def test_sdk_non_streaming_with_headers(gw, fakes, model):
    raw = sdk(gw).chat.completions.with_raw_response.create(model=model, messages=MESSAGES, max_tokens=50)
    completion = raw.parse()
    assert completion.choices[0].message.content == f"Answer from {model}."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == model
    assert completion.usage.completion_tokens == 3
    assert raw.headers["x-ferryman-model"] == model
    assert raw.headers["x-ferryman-tier"] == "passthrough"
    assert raw.headers["x-ferryman-attempts"] == "1"
    assert raw.headers["x-ferryman-fallbacks"] == "0"
    assert float(raw.headers["x-ferryman-cost"]) > 0
    sent = fakes[model].last_body
    if "anthropic" in model:  # translated to the Messages API
        assert sent["system"] == "Be brief."
        assert sent["messages"] == [{"role": "user", "content": "What is 2 + 2?"}]
        assert sent["max_tokens"] == 50
        assert fakes[model].last_headers["x-api-key"] == PROVIDER_KEY
    else:
        assert sent["messages"] == MESSAGES
        assert fakes[model].last_headers["authorization"] == f"Bearer {PROVIDER_KEY}"


@pytest.mark.parametrize("model", ["weak-openai", "strong-anthropic"])
def test_sdk_streaming(gw, model):
    stream = sdk(gw).chat.completions.create(
        model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Answer from {model}."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_sdk_unsupported_features_are_refused_not_dropped(gw, fakes):
    client = sdk(gw)
    function = {"name": "lookup", "parameters": {"type": "object", "properties": {}}}
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="weak-openai", messages=MESSAGES, functions=[function])
    assert err.value.code == "unsupported_parameter" and err.value.param == "functions"
    assert fakes["weak-openai"].requests == 0
    # The values that mean "feature off" are accepted.
    ok = client.chat.completions.create(model="weak-openai", messages=MESSAGES, n=1, tool_choice="none", logprobs=False)
    assert ok.choices[0].message.content == "Answer from weak-openai."


def test_models_health_metrics(gw):
    ids = [m.id for m in sdk(gw).models.list()]
    assert "ferryman-balanced" in ids and "strong-openai" in ids
    assert httpx.get(gw.http_url + "/healthz").json() == {"status": "ok"}
    # readiness (breaker states) and metrics are the admin listener's, not the API's (issue #11, defect 8)
    assert httpx.get(gw.http_url + "/readyz").status_code == 404
    assert httpx.get(gw.http_url + "/metrics").status_code == 404
    assert httpx.get(gw.admin_url + "/healthz").status_code == 200
    ready = httpx.get(gw.admin_url + "/readyz")
    assert ready.status_code == 200 and ready.json()["breakers"]["weak-openai"] == "closed"
    sdk(gw).chat.completions.create(model="weak-openai", messages=MESSAGES)
    metrics = httpx.get(gw.admin_url + "/metrics").text
    assert 'ferryman_gateway_requests_total{model="weak-openai",outcome="ok",tier="passthrough"} 1.0' in metrics
    assert "ferryman_gateway_cost_saved_usd_total" in metrics
    assert PROVIDER_KEY not in metrics


def test_http_requests_are_counted_and_timed_by_route_and_status(gw):
    """Was: only gRPC calls had a count by status and a latency histogram; the OpenAI-compatible HTTP API, what
    most clients use, had neither (no 4xx/5xx rate, no p99 for an SRE to alert on)."""
    sdk(gw).chat.completions.create(model="weak-openai", messages=MESSAGES)
    for _ in sdk(gw).chat.completions.create(model="weak-openai", messages=MESSAGES, stream=True):
        pass
    with pytest.raises(openai.AuthenticationError):
        sdk(gw, key="wrong").chat.completions.create(model="weak-openai", messages=MESSAGES)
    sdk(gw).models.retrieve("weak-openai")
    assert httpx.get(gw.http_url + "/v1/nothing/here").status_code == 404
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(httpx.get(gw.admin_url + "/metrics").text)
        for s in family.samples
    }
    requests = "ferryman_gateway_http_requests_total"
    assert samples[(requests, (("code", "200"), ("route", "/v1/chat/completions")))] == 2
    assert samples[(requests, (("code", "401"), ("route", "/v1/chat/completions")))] == 1
    assert samples[(requests, (("code", "200"), ("route", "/v1/models/{id:path}")))] == 1
    assert samples[(requests, (("code", "404"), ("route", "other")))] == 1  # unknown paths: one bounded label
    latency = "ferryman_gateway_http_latency_seconds_count"
    assert samples[(latency, (("route", "/v1/chat/completions"),))] == 3


def _post(gw, body, key=CLIENT_KEY, **kw):
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(gw.http_url + "/v1/chat/completions", content=body, headers=headers, timeout=10, **kw)


BAD_INPUTS = {
    "invalid JSON": (b'{"model": "weak-openai", "messages": [', 400, None),
    "not an object": (b"[1, 2]", 400, None),
    "missing messages": (json.dumps({"model": "weak-openai"}).encode(), 400, "messages"),
    "empty messages": (json.dumps({"model": "weak-openai", "messages": []}).encode(), 400, "messages"),
    "bad role": (json.dumps({"model": "weak-openai", "messages": [{"role": "x", "content": "a"}]}).encode(), 400, None),
    "unknown model": (json.dumps({"model": "gpt-9", "messages": MESSAGES}).encode(), 404, "model"),
    "unknown policy": (
        json.dumps({"model": "router-mf-0.5", "messages": MESSAGES, "routing": {"policy": "nope"}}).encode(),
        404,
        "routing.policy",
    ),
    "threshold above 1": (json.dumps({"model": "router-mf-1.5", "messages": MESSAGES}).encode(), 400, "threshold"),
    "threshold below 0": (json.dumps({"model": "router-mf--0.1", "messages": MESSAGES}).encode(), 400, "threshold"),
    "threshold NaN in name": (json.dumps({"model": "router-mf-nan", "messages": MESSAGES}).encode(), 400, "threshold"),
    "threshold NaN in options": (
        b'{"model": "router-mf-0.5", "messages": [{"role": "user", "content": "a"}], "routing": {"threshold": NaN}}',
        400,
        "threshold",
    ),
    "threshold not a number": (json.dumps({"model": "router-mf-abc", "messages": MESSAGES}).encode(), 400, "model"),
    "strong_share above 1": (
        json.dumps({"model": "ferryman-balanced", "messages": MESSAGES, "routing": {"strong_share": 2}}).encode(),
        400,
        "strong_share",
    ),
    "legacy functions (unsupported)": (
        json.dumps({"model": "weak-openai", "messages": MESSAGES, "functions": [{"name": "f"}]}).encode(),
        400,
        "functions",
    ),
    "audio output (unsupported)": (
        json.dumps({"model": "weak-openai", "messages": MESSAGES, "audio": {"voice": "alloy"}}).encode(),
        400,
        "audio",
    ),
    "temperature out of range": (
        json.dumps({"model": "weak-openai", "messages": MESSAGES, "temperature": 9}).encode(),
        400,
        "temperature",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_openai_shaped_4xx(gw, fakes, case):
    body, status, param = BAD_INPUTS[case]
    r = _post(gw, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and err["message"]
    if param:
        assert err["param"] == param
    assert sum(f.requests for f in fakes.values()) == 0  # rejected before any provider call


def test_oversized_body_is_413(gw):
    big = json.dumps({"model": "weak-openai", "messages": [{"role": "user", "content": "x" * 1_100_000}]}).encode()
    r = _post(gw, big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunks():  # no Content-Length: the limit applies while reading
        yield big[:600_000]
        yield big[600_000:]

    r = _post(gw, chunks())
    assert r.status_code == 413


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_auth_required(gw, fakes, key):
    r = _post(gw, json.dumps({"model": "weak-openai", "messages": MESSAGES}).encode(), key=key)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key"
    if key:
        with pytest.raises(openai.AuthenticationError):
            sdk(gw, key).chat.completions.create(model="weak-openai", messages=MESSAGES)
    assert httpx.get(gw.http_url + "/v1/models").status_code == 401
    assert fakes["weak-openai"].requests == 0


def test_auth_disabled_explicitly(fakes):
    with GatewayThread(gateway_config(fakes, auth={"disabled": True}), keys=frozenset()) as gw:
        r = _post(gw, json.dumps({"model": "weak-openai", "messages": MESSAGES}).encode(), key=None)
        assert r.status_code == 200


def test_a_router_whose_name_has_a_hyphen_is_routed_by_its_model_names(fakes, test_routers, tmp_path):
    """docs/gateway.md's three-tier recipe trains ``routers/mf-arena``; the scorer serves it and /v1/models lists
    ``router-mf-arena`` with its forms, but ``router-mf-arena-s0.5`` was a 400 "threshold 'arena-s0.5' is not a
    number" (the name was split at its first hyphen)."""
    import shutil

    from harness.scorer import scorer_in_thread

    routers = shutil.copytree(test_routers, tmp_path / "routers")
    shutil.copytree(routers / "mf", routers / "mf-arena")
    manifest = routers / "mf-arena" / "manifest.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"name": "mf-arena"}))
    with (
        scorer_in_thread(routers) as address,
        GatewayThread(gateway_config(fakes, scorer_target=f"dns:///{address}")) as gw,
    ):
        client = sdk(gw)
        family = next(m for m in client.models.list() if m.id == "router-mf-arena")
        assert family.model_extra["ferryman"]["forms"] == ["router-mf-arena-<threshold>", "router-mf-arena-s<share>"]
        routed = {
            "router-mf-arena-s0.5": "mf-arena",
            "router-mf-arena-0.5": "mf-arena",
            "router-mf-arena-1e-1": "mf-arena",
        }
        for model, router in (routed | {"router-mf-0.5": "mf", "router-mf-1e-1": "mf"}).items():
            raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
            assert raw.headers["x-ferryman-router"] == router, model
            assert raw.headers["x-ferryman-decision-source"] == "scored", model
            assert client.models.retrieve(model).id == model
        for model, message in (
            ("router-mf-abc", "threshold 'abc' is not a number"),
            ("router-mf-arena--0.1", "threshold"),
        ):
            with pytest.raises(openai.BadRequestError, match=message):
                client.chat.completions.create(model=model, messages=MESSAGES)
