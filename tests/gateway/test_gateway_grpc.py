"""gRPC GatewayService against a real scorer and fake providers: routing, streaming, errors, health."""

from __future__ import annotations

import math
import re
import time

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ferryman.calibration import CalibrationTable
from ferryman.gateway.v1 import gateway_pb2 as pb
from ferryman.gateway.v1 import gateway_pb2_grpc
from ferryman.scorer.v1 import scorer_pb2, scorer_pb2_grpc
from gateway.service import Runtime
from harness.fake_provider import DISCONNECT, status
from harness.gateway import CLIENT_KEY, GatewayThread, gateway_config
from harness.processes import free_port
from harness.scorer import SAMPLE_PROMPTS

AUTH = (("authorization", f"Bearer {CLIENT_KEY}"),)
MSGS = [pb.ChatMessage(role="user", content="Prove that there are infinitely many primes.")]


@pytest.fixture
def gw(fakes, scorer_address):
    with GatewayThread(gateway_config(fakes, scorer_target=f"dns:///{scorer_address}")) as g:
        yield g


@pytest.fixture
def stub(gw):
    with grpc.insecure_channel(gw.grpc_target) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


def scorer_stub(address: str) -> scorer_pb2_grpc.ScorerServiceStub:
    return scorer_pb2_grpc.ScorerServiceStub(grpc.insecure_channel(address))


def test_route_without_any_provider_keys(fakes, scorer_address):
    g = GatewayThread(gateway_config(fakes, scorer_target=f"dns:///{scorer_address}"))
    g.runtime = Runtime(client_keys=frozenset({CLIENT_KEY}), environ={})  # no provider key anywhere
    with g, grpc.insecure_channel(g.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        d = stub.Route(pb.RouteRequest(model="router-mf-0.5", messages=MSGS), metadata=AUTH).decision
        expected = (
            scorer_stub(scorer_address)
            .Score(scorer_pb2.ScoreRequest(router="mf", prompt=MSGS[0].content))
            .strong_win_rate
        )
        assert d.source == pb.DECISION_SOURCE_SCORED
        assert d.score == pytest.approx(expected, abs=1e-6)
        assert d.tier == (pb.TIER_STRONG if expected >= 0.5 else pb.TIER_WEAK)
        assert d.model == ("strong-openai" if expected >= 0.5 else "weak-openai")
        assert d.router == "mf" and d.threshold == 0.5 and d.scorer_latency_ms > 0
        assert 0 < d.scorer_server_time_ms < d.scorer_latency_ms  # the scorer's share of the round trip
        assert stub.Route(pb.RouteRequest(model="router-mf-0", messages=MSGS), metadata=AUTH).decision.tier == (
            pb.TIER_STRONG
        )
    assert sum(f.requests for f in fakes.values()) == 0


def test_http_answer_splits_scorer_time_into_round_trip_and_server(gw):
    body = {"model": "router-mf-0.5", "messages": [{"role": "user", "content": MSGS[0].content}]}
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    r = httpx.post(gw.http_url + "/v1/chat/completions", json=body, headers=headers, timeout=10)
    assert r.status_code == 200 and r.headers["x-ferryman-decision-source"] == "scored"
    rtt, server = float(r.headers["x-ferryman-scorer-ms"]), float(r.headers["x-ferryman-scorer-server-ms"])
    assert 0 < server < rtt
    decision = r.json()["ferryman"]["decision"]
    assert decision["scorer_server_ms"] == pytest.approx(server, abs=1e-3)


def test_share_named_router_models_and_router_families(gw, stub, scorer_address):
    """``router-<router>-s<share>`` routes at a target strong-call share through the router's calibration
    table (as a policy does); ``/v1/models`` lists each router the scorer serves as a family."""
    routers = scorer_stub(scorer_address).ListRouters(scorer_pb2.ListRoutersRequest()).routers
    for name, share in (("mf", 0.3), ("sw", 0.75)):
        table = CalibrationTable(
            (p.strong_share, p.threshold) for p in next(r for r in routers if r.name == name).calibration
        )
        d = stub.Route(pb.RouteRequest(model=f"router-{name}-s{share}", messages=MSGS), metadata=AUTH).decision
        assert d.router == name and d.source == pb.DECISION_SOURCE_SCORED
        assert d.threshold == table.threshold_for(share)
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    models = httpx.get(gw.http_url + "/v1/models", headers=headers, timeout=10).json()["data"]
    families = {m["id"]: m["ferryman"] for m in models if m["ferryman"]["type"] == "router_family"}
    assert set(families) == {f"router-{r.name}" for r in routers}
    assert families["router-mf"]["forms"] == ["router-mf-<threshold>", "router-mf-s<share>"]
    assert {m["ferryman"]["type"] for m in models} == {"policy", "model", "router_family"}
    for bad, code in (("router-mf-s1.5", 400), ("router-mf-sx", 400), ("router-mf-s", 400), ("router-mf", 404)):
        body = {"model": bad, "messages": [{"role": "user", "content": "hi"}]}
        r = httpx.post(gw.http_url + "/v1/chat/completions", json=body, headers=headers, timeout=10)
        assert r.status_code == code, (bad, r.text)
    assert "router-<router>-s<share>" in r.json()["error"]["message"]


def test_both_sdks_retrieve_a_model_and_unknown_endpoints_answer_in_the_error_shape(gw, stub):
    """``models.retrieve`` (GET /v1/models/{id}), which tools call to check a model name, was a plain-text 404 for
    every name, and so were /v1/embeddings, /v1/completions and a GET of /v1/chat/completions; now a policy, a
    configured model and a router-<router>-... name the scorer serves are found, in both SDKs' shapes, and an
    unknown name or endpoint is an OpenAI-shaped 404 / 405 saying what is served."""
    import anthropic
    import openai

    stub.Route(pb.RouteRequest(model="router-mf-s0.3", messages=MSGS), metadata=AUTH)  # the routers are fetched
    client = openai.OpenAI(base_url=gw.http_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20)
    claude = anthropic.Anthropic(base_url=gw.http_url, api_key=CLIENT_KEY, max_retries=0, timeout=20)
    for name, kind in (("ferryman-balanced", "policy"), ("weak-anthropic", "model"), ("router-mf-s0.3", "routed")):
        model = client.models.retrieve(name)
        assert (model.id, model.owned_by, model.model_extra["ferryman"]["type"]) == (name, "ferryman", kind)
        assert claude.models.retrieve(name).display_name == name
    assert client.models.retrieve("router-sw-0.42").model_extra["ferryman"]["router"] == "sw"
    listed = {m.id: m.model_extra["ferryman"] for m in client.models.list()}
    assert all(client.models.retrieve(name).model_extra["ferryman"] == info for name, info in listed.items())
    for unknown, why in (("gpt-9", "unknown model 'gpt-9'"), ("router-zz-0.5", "serves no router 'zz' (it serves: ")):
        with pytest.raises(openai.NotFoundError, match=re.escape(why)):
            client.models.retrieve(unknown)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gw.http_url + "/v1", api_key="wrong", max_retries=0).models.retrieve("ferryman-balanced")
    with pytest.raises(openai.NotFoundError) as missing:
        client.embeddings.create(model="weak-openai", input="hi")
    error = missing.value.body
    assert isinstance(error, dict) and error["code"] == "not_found"
    assert error["message"].startswith("POST /v1/embeddings: not found; this gateway serves POST /v1/chat/completions,")
    assert "GET /v1/models/{id}" in error["message"]
    wrong = httpx.get(gw.http_url + "/v1/chat/completions", timeout=10)
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json()["error"]["code"] == "method_not_allowed"


def test_an_empty_last_user_message_is_refused_naming_the_messages_not_the_model(gw, stub, fakes):
    """Was: 400 "the scorer rejected the routing request: prompt is empty" with param "model" (the model name was
    fine). Now the same 400 / INVALID_ARGUMENT says what is wrong, over HTTP (both APIs) and gRPC; a plain model
    still gets the request as it is."""
    import anthropic
    import openai

    client = openai.OpenAI(base_url=gw.http_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20)
    why = "the last user message is empty: a routed request is routed on its text"
    for content in ("", "  \n "):
        messages = [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "a"}]
        messages.append({"role": "user", "content": content})
        for model in ("ferryman-balanced", "router-mf-0.5"):
            with pytest.raises(openai.BadRequestError) as err:
                client.chat.completions.create(model=model, messages=messages)
            assert (err.value.param, err.value.body["message"]) == ("messages", why)
    claude = anthropic.Anthropic(base_url=gw.http_url, api_key=CLIENT_KEY, max_retries=0, timeout=20)
    with pytest.raises(anthropic.BadRequestError, match=why):
        claude.messages.create(model="ferryman-balanced", max_tokens=10, messages=[{"role": "user", "content": " "}])
    with pytest.raises(grpc.RpcError) as rpc:
        stub.Route(pb.RouteRequest(model="ferryman-balanced", messages=[pb.ChatMessage(role="user")]), metadata=AUTH)
    assert rpc.value.code() == grpc.StatusCode.INVALID_ARGUMENT and rpc.value.details() == why
    plain = client.chat.completions.create(model="weak-openai", messages=[{"role": "user", "content": ""}])
    assert plain.choices[0].message.content and fakes["weak-openai"].requests == 1


def test_every_step_of_a_tool_conversation_is_scored_on_the_last_user_turn(gw, stub, scorer_address):
    """The documented rule (docs/gateway.md): tool calls and results are not scored, so each step of a
    tool loop gets the question's score and tier, over gRPC and over Anthropic's /v1/messages alike."""
    question = MSGS[0].content
    expected = scorer_stub(scorer_address).Score(scorer_pb2.ScoreRequest(router="mf", prompt=question))
    tool = pb.Tool(name="lookup", parameters_json='{"type": "object"}')
    call = pb.ChatMessage(role="assistant", tool_calls=[pb.ToolCall(id="c1", name="lookup", arguments="{}")])
    result = pb.ChatMessage(role="tool", tool_call_id="c1", content="row 1: 0x3f 0x2a ... " * 200)
    for messages in ([MSGS[0]], [MSGS[0], call, result]):
        d = stub.Route(pb.RouteRequest(model="router-mf-0.5", messages=messages, tools=[tool]), metadata=AUTH)
        assert d.decision.source == pb.DECISION_SOURCE_SCORED
        assert d.decision.score == pytest.approx(expected.strong_win_rate, abs=1e-6)
    use = {"type": "tool_use", "id": "t1", "name": "lookup", "input": {}}
    body = {
        "model": "router-mf-0.5",
        "max_tokens": 50,
        "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": [use]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": result.content}]},
        ],
    }
    r = httpx.post(gw.http_url + "/v1/messages", json=body, headers={"x-api-key": CLIENT_KEY}, timeout=10)
    assert r.status_code == 200, r.text
    assert float(r.headers["x-ferryman-score"]) == pytest.approx(expected.strong_win_rate, abs=1e-5)


def test_policy_threshold_comes_from_the_calibration_table(stub, scorer_address):
    routers = scorer_stub(scorer_address).ListRouters(scorer_pb2.ListRoutersRequest()).routers
    table = CalibrationTable(
        (p.strong_share, p.threshold) for p in next(r for r in routers if r.name == "mf").calibration
    )
    strong = 0
    for prompt in SAMPLE_PROMPTS:
        msgs = [pb.ChatMessage(role="user", content=prompt)]
        d = stub.Route(pb.RouteRequest(model="ferryman-balanced", messages=msgs), metadata=AUTH).decision
        assert d.policy == "ferryman-balanced" and d.source == pb.DECISION_SOURCE_SCORED
        assert d.threshold == table.threshold_for(0.3)  # the one rule (ferryman.calibration)
        strong += d.tier == pb.TIER_STRONG
    share = strong / len(SAMPLE_PROMPTS)
    print(f"\nferryman-balanced (target 30 % strong) on {len(SAMPLE_PROMPTS)} calibration prompts: {share:.0%} strong")
    assert 0.2 <= share <= 0.4
    # per-request override of the share
    msgs = [pb.ChatMessage(role="user", content=SAMPLE_PROMPTS[0])]
    opts = pb.RoutingOptions(router="sw", strong_share=1.0)
    d = stub.Route(pb.RouteRequest(model="ferryman-balanced", messages=msgs, routing=opts), metadata=AUTH).decision
    sw_table = sorted((p.strong_share, p.threshold) for p in next(r for r in routers if r.name == "sw").calibration)
    assert d.router == "sw" and d.threshold == pytest.approx(sw_table[-1][1])


def test_chat_completion_reports_what_happened(stub, fakes):
    r = stub.ChatCompletion(pb.ChatCompletionRequest(model="router-mf-0", messages=MSGS, max_tokens=20), metadata=AUTH)
    assert r.message.content == "Answer from strong-openai." and r.model == "strong-openai"
    assert r.decision.tier == pb.TIER_STRONG and r.decision.source == pb.DECISION_SOURCE_SCORED
    acc = r.accounting
    assert acc.served_model == "strong-openai" and not acc.degraded
    assert [a.outcome for a in acc.attempts] == [pb.ATTEMPT_OUTCOME_SUCCESS]
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0
    assert acc.cost_usd == pytest.approx(acc.strong_cost_usd) and acc.cost_usd > 0
    fakes["strong-openai"].reset(default=status(500))
    r = stub.ChatCompletion(pb.ChatCompletionRequest(model="router-mf-0", messages=MSGS), metadata=AUTH)
    assert r.accounting.degraded and r.accounting.served_model == "strong-anthropic"
    assert r.accounting.attempts[0].outcome == pb.ATTEMPT_OUTCOME_TRANSIENT_ERROR
    assert r.accounting.attempts[0].retries == 2


def test_stream_chat_completion(stub):
    events = list(
        stub.StreamChatCompletion(pb.StreamChatCompletionRequest(model="router-mf-1", messages=MSGS), metadata=AUTH)
    )
    assert events[0].WhichOneof("event") == "decision" and events[0].decision.tier == pb.TIER_WEAK
    assert "".join(e.delta for e in events if e.WhichOneof("event") == "delta") == "Answer from weak-openai."
    summary = events[-1].summary
    assert summary.model == "weak-openai" and summary.finish_reason == "stop"
    assert summary.accounting.cost_usd < summary.accounting.strong_cost_usd
    assert len({e.id for e in events}) == 1


def test_stream_interrupted_after_first_token_is_an_error_status(stub, fakes):
    fakes["weak-openai"].reset(default=DISCONNECT)
    call = stub.StreamChatCompletion(pb.StreamChatCompletionRequest(model="weak-openai", messages=MSGS), metadata=AUTH)
    deltas = []
    with pytest.raises(grpc.RpcError) as info:
        for event in call:
            if event.WhichOneof("event") == "delta":
                deltas.append(event.delta)
    assert deltas and info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "after the stream started" in info.value.details()


BAD = {
    "no messages": pb.ChatCompletionRequest(model="weak-openai"),
    "unknown model": pb.ChatCompletionRequest(model="gpt-9", messages=MSGS),
    "unknown policy": pb.ChatCompletionRequest(
        model="router-mf-0.5", messages=MSGS, routing=pb.RoutingOptions(policy="nope")
    ),
    "threshold > 1": pb.ChatCompletionRequest(model="router-mf-1.01", messages=MSGS),
    "threshold NaN": pb.ChatCompletionRequest(
        model="router-mf-0.5", messages=MSGS, routing=pb.RoutingOptions(threshold=math.nan)
    ),
    "threshold < 0": pb.ChatCompletionRequest(
        model="router-mf-0.5", messages=MSGS, routing=pb.RoutingOptions(threshold=-0.5)
    ),
    "share and threshold": pb.ChatCompletionRequest(
        model="router-mf-0.5", messages=MSGS, routing=pb.RoutingOptions(threshold=0.5, strong_share=0.5)
    ),
    "unknown router": pb.ChatCompletionRequest(model="router-nosuch-0.5", messages=MSGS),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_invalid_argument(stub, fakes, case):
    with pytest.raises(grpc.RpcError) as info:
        stub.ChatCompletion(BAD[case], metadata=AUTH)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert sum(f.requests for f in fakes.values()) == 0


@pytest.mark.parametrize("metadata", [(), (("authorization", "Bearer wrong"),), (("authorization", "Basic x"),)])
def test_missing_or_wrong_key_is_unauthenticated(stub, metadata):
    for call in (
        lambda: stub.Route(pb.RouteRequest(model="weak-openai", messages=MSGS), metadata=metadata),
        lambda: stub.ChatCompletion(pb.ChatCompletionRequest(model="weak-openai", messages=MSGS), metadata=metadata),
        lambda: list(
            stub.StreamChatCompletion(
                pb.StreamChatCompletionRequest(model="weak-openai", messages=MSGS), metadata=metadata
            )
        ),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_health_and_reflection(gw):
    with grpc.insecure_channel(gw.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "ferryman.gateway.v1.GatewayService"):  # no key: Kubernetes probes send none
            assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == (
                health_pb2.HealthCheckResponse.SERVING
            )
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        ask = [reflection_pb2.ServerReflectionRequest(list_services="")]
        [resp] = list(refl.ServerReflectionInfo(iter(ask), metadata=AUTH))
        names = {s.name for s in resp.list_services_response.service}
        assert "ferryman.gateway.v1.GatewayService" in names
        with pytest.raises(grpc.RpcError) as info:  # reflection needs the key (issue #11, defect 8)
            list(refl.ServerReflectionInfo(iter(ask)))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_scorer_slower_than_its_deadline_uses_the_default_tier(fakes, scorer_address):
    config = gateway_config(fakes, scorer_target=f"dns:///{scorer_address}", scorer={"deadline_ms": 0.001})
    with GatewayThread(config) as g, grpc.insecure_channel(g.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        r = stub.ChatCompletion(pb.ChatCompletionRequest(model="router-mf-1", messages=MSGS), metadata=AUTH)
        assert r.decision.source == pb.DECISION_SOURCE_SCORER_UNAVAILABLE
        assert r.decision.tier == pb.TIER_STRONG  # routing.scorer_down_tier
        assert r.message.content == "Answer from strong-openai."
        metrics = g.gateway.metrics.render().decode()
        assert 'ferryman_gateway_scorer_failures_total{code="DEADLINE_EXCEEDED"}' in metrics


def test_scorer_down_uses_the_policy_default_tier(fakes):
    config = gateway_config(
        fakes, policies={"economy": {"router": "mf", "strong_share": 0.1, "scorer_down_tier": "weak"}}
    )
    with GatewayThread(config) as g, grpc.insecure_channel(g.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        r = stub.ChatCompletion(pb.ChatCompletionRequest(model="economy", messages=MSGS), metadata=AUTH)
        assert r.decision.source == pb.DECISION_SOURCE_SCORER_UNAVAILABLE and r.decision.tier == pb.TIER_WEAK
        assert r.message.content == "Answer from weak-openai."


def test_oversized_request_is_rejected(stub, fakes):
    big = [pb.ChatMessage(role="user", content="x" * 1_100_000)]
    with pytest.raises(grpc.RpcError) as info:
        stub.ChatCompletion(pb.ChatCompletionRequest(model="weak-openai", messages=big), metadata=AUTH)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert fakes["weak-openai"].requests == 0


def test_scorer_that_comes_up_later_is_used_once_calibrated(fakes, test_routers):
    from harness.scorer import scorer_in_thread

    port = free_port()
    config = gateway_config(fakes, scorer_target=f"dns:///127.0.0.1:{port}", scorer={"calibration_refresh_s": 0.5})
    request = pb.RouteRequest(model="ferryman-balanced", messages=MSGS)
    with GatewayThread(config) as g, grpc.insecure_channel(g.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        before = stub.Route(request, metadata=AUTH).decision  # no scorer yet: default tier, at once
        assert before.source == pb.DECISION_SOURCE_SCORER_UNAVAILABLE and before.tier == pb.TIER_STRONG
        with scorer_in_thread(test_routers, port=port):
            deadline = time.monotonic() + 20
            while stub.Route(request, metadata=AUTH).decision.source != pb.DECISION_SOURCE_SCORED:
                assert time.monotonic() < deadline, "the gateway never picked up the scorer's calibration"
                time.sleep(0.2)


def test_decisions_name_the_artifact_version_and_follow_a_promoted_one(fakes, test_routers, tmp_path):
    """The scorer reloads a promoted version; the gateway's decisions name it and its thresholds follow it."""
    import shutil

    from harness.scorer import add_flipped_mf_version, scorer_in_thread
    from scorer import versions

    routers = tmp_path / "routers"
    routers.mkdir()
    shutil.copytree(test_routers / "mf", routers / "mf")
    v1 = add_flipped_mf_version(routers / "mf")
    request = pb.RouteRequest(model="ferryman-balanced", messages=MSGS)
    with scorer_in_thread(routers, reload_interval_s=0.05) as address:
        # Tables refresh every hour here: only a new version in a Score answer can refresh them sooner.
        config = gateway_config(fakes, scorer_target=f"dns:///{address}", scorer={"calibration_refresh_s": 3600})

        def table() -> CalibrationTable:
            mf = next(r for r in scorer_stub(address).ListRouters(scorer_pb2.ListRoutersRequest()).routers)
            return CalibrationTable((p.strong_share, p.threshold) for p in mf.calibration)

        with GatewayThread(config) as g, grpc.insecure_channel(g.grpc_target) as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            before = stub.Route(request, metadata=AUTH).decision
            assert before.router_version.startswith("base@") and before.threshold == table().threshold_for(0.3)
            versions.set_current(routers / "mf", v1, action="promote")
            deadline = time.monotonic() + 20
            while not (d := stub.Route(request, metadata=AUTH).decision).router_version.startswith(f"{v1}@"):
                assert time.monotonic() < deadline, "the scorer never served the promoted version"
                time.sleep(0.05)
            assert d.score == pytest.approx(1 - before.score, abs=1e-9)
            want = table().threshold_for(0.3)
            assert want != before.threshold
            while (d := stub.Route(request, metadata=AUTH).decision).threshold != want:
                assert time.monotonic() < deadline, "the gateway kept the old version's calibration table"
                time.sleep(0.05)
            assert d.router_version.startswith(f"{v1}@")
            body = {"model": "router-mf-0.5", "messages": [{"role": "user", "content": MSGS[0].content}]}
            headers = {"authorization": f"Bearer {CLIENT_KEY}"}
            r = httpx.post(g.http_url + "/v1/chat/completions", json=body, headers=headers, timeout=10)
            assert r.headers["x-ferryman-router-version"] == d.router_version
            assert r.json()["ferryman"]["decision"]["router_version"] == d.router_version


def test_online_calibration_starts_again_for_a_promoted_version(fakes, test_routers, tmp_path):
    """Live thresholds learnt on one version's scores are not applied to a promoted version's scores.

    The promoted version reverses every preference (score -> 1 - score): thresholds learnt on the base
    version's window would send the wrong prompts, and the wrong share, to the top tier. The promoted
    version warms up from its own calibration table, then calibrates on a window of its own scores.
    """
    import shutil

    from harness.scorer import add_flipped_mf_version, scorer_in_thread
    from scorer import versions

    routers = tmp_path / "routers"
    routers.mkdir()
    shutil.copytree(test_routers / "mf", routers / "mf")
    v1 = add_flipped_mf_version(routers / "mf")
    calibration = {"online": True, "window": 40, "min_samples": 20, "update_every": 5, "max_step": 1.0}
    prompts = [pb.ChatMessage(role="user", content=p) for p in SAMPLE_PROMPTS]

    def route(stub, i: int) -> pb.RoutingDecision:
        request = pb.RouteRequest(model="ferryman-balanced", messages=[prompts[i % len(prompts)]])
        return stub.Route(request, metadata=AUTH).decision

    with scorer_in_thread(routers, reload_interval_s=0.05) as address:
        config = gateway_config(
            fakes, scorer_target=f"dns:///{address}", scorer={"calibration_refresh_s": 3600}, calibration=calibration
        )
        with GatewayThread(config) as g, grpc.insecure_channel(g.grpc_target) as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            base = [route(stub, i) for i in range(30)]
            assert base[0].threshold_source == pb.THRESHOLD_SOURCE_ARTIFACT
            assert base[-1].threshold_source == pb.THRESHOLD_SOURCE_ONLINE
            assert all(d.router_version.startswith("base@") for d in base)
            versions.set_current(routers / "mf", v1, action="promote")
            deadline, i = time.monotonic() + 20, 30
            after: list[pb.RoutingDecision] = []
            while len(after) < 30:
                assert time.monotonic() < deadline, "the scorer never served the promoted version"
                d = route(stub, i)
                i += 1
                if d.router_version.startswith(f"{v1}@"):
                    after.append(d)
            # Its first decisions use the promoted version's own table (the table refreshes on the first
            # answer from it, so the very first may still read the base table), never the base's window.
            assert after[0].threshold_source == pb.THRESHOLD_SOURCE_ARTIFACT
            mirrored = next(
                r for r in scorer_stub(address).ListRouters(scorer_pb2.ListRoutersRequest()).routers if r.name == "mf"
            )
            want = CalibrationTable((p.strong_share, p.threshold) for p in mirrored.calibration).threshold_for(0.3)
            warm = [d for d in after[:19] if d.threshold_source == pb.THRESHOLD_SOURCE_ARTIFACT]
            assert len(warm) == 19 and warm[-1].threshold == pytest.approx(want)
            assert after[-1].threshold_source == pb.THRESHOLD_SOURCE_ONLINE
            _, _, size = g.gateway.calibration.applied("ferryman-balanced", "mf")
            assert size == len(after)  # the window holds the promoted version's scores only


def test_a_score_is_thresholded_with_its_own_versions_table(fakes, test_routers, tmp_path):
    """After a promotion and a rollback, the first decisions scored by the base version again use the base's
    calibration table — the gateway keeps the tables of the versions it fetched. Was: one table per router,
    the last fetched, so the first requests after the rollback (and, in a rollout where scorer replicas serve
    two versions, every request scored by the version fetched less recently) were thresholded with the
    promoted version's table: here the mirrored one, which sends the opposite prompts to the strong tier."""
    import shutil

    from harness.scorer import add_flipped_mf_version, scorer_in_thread
    from scorer import versions

    routers = tmp_path / "routers"
    routers.mkdir()
    shutil.copytree(test_routers / "mf", routers / "mf")
    v1 = add_flipped_mf_version(routers / "mf")
    prompts = [pb.ChatMessage(role="user", content=p) for p in SAMPLE_PROMPTS]

    def route(stub, i: int) -> pb.RoutingDecision:
        request = pb.RouteRequest(model="ferryman-balanced", messages=[prompts[i % len(prompts)]])
        return stub.Route(request, metadata=AUTH).decision

    def table_threshold(address: str) -> float:
        (mf,) = [r for r in scorer_stub(address).ListRouters(scorer_pb2.ListRoutersRequest()).routers if r.name == "mf"]
        return CalibrationTable((p.strong_share, p.threshold) for p in mf.calibration).threshold_for(0.3)

    def serve(stub, start: int, version: str) -> tuple[int, list[pb.RoutingDecision]]:
        deadline, i, out = time.monotonic() + 20, start, []
        while len(out) < 5:
            assert time.monotonic() < deadline, f"the scorer never served {version}"
            d = route(stub, i)
            i += 1
            if d.router_version.startswith(f"{version}@"):
                out.append(d)
        return i, out

    with scorer_in_thread(routers, reload_interval_s=0.05) as address:
        base_threshold = table_threshold(address)
        config = gateway_config(fakes, scorer_target=f"dns:///{address}", scorer={"calibration_refresh_s": 3600})
        with GatewayThread(config) as g, grpc.insecure_channel(g.grpc_target) as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            i, base = serve(stub, 0, "base")
            assert [d.threshold for d in base] == [pytest.approx(base_threshold)] * len(base)
            versions.set_current(routers / "mf", v1, action="promote")
            i, promoted = serve(stub, i, v1)
            v1_threshold = table_threshold(address)
            assert v1_threshold != pytest.approx(base_threshold)
            assert promoted[-1].threshold == pytest.approx(v1_threshold)  # its table, once fetched
            versions.set_current(routers / "mf", versions.BASE, action="rollback")
            _, again = serve(stub, i, "base")
            assert [d.threshold for d in again] == [pytest.approx(base_threshold)] * len(again)
            assert all(d.threshold_source == pb.THRESHOLD_SOURCE_ARTIFACT for d in again)
