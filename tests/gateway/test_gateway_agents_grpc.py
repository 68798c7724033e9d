"""gRPC parity for agent traffic (issue #14): the same tool calling, structured output, logprobs and n
through ``GatewayService`` as over HTTP, against fake providers speaking each wire format."""

from __future__ import annotations

import json

import grpc
import pytest

from ferryman.gateway.v1 import gateway_pb2 as pb
from ferryman.gateway.v1 import gateway_pb2_grpc
from harness.fake_provider import status
from harness.gateway import CLIENT_KEY, GatewayThread, gateway_config

AUTH = (("authorization", f"Bearer {CLIENT_KEY}"),)
ROUTED = "router-mf-0.5"  # scorer unreachable: the strong tier, strong-openai → strong-anthropic
ARGUMENTS = '{"city": "Paris"}'
RESULT = "18 C and sunny"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOL = pb.Tool(name="get_weather", description="Current weather", parameters_json=json.dumps(SCHEMA))
QUESTION = pb.ChatMessage(role="user", content="What is the weather in Paris?")


@pytest.fixture
def stub(fakes):
    for fake in fakes.values():
        fake.tool_arguments = ARGUMENTS
    with GatewayThread(gateway_config(fakes)) as gw, grpc.insecure_channel(gw.grpc_target) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


def _ask(stub, model: str, messages: list[pb.ChatMessage], stream: bool, **fields) -> dict:
    """One call as {content, tool_calls, finish_reason, model, served}: whole, or put together from a stream."""
    if not stream:
        r = stub.ChatCompletion(pb.ChatCompletionRequest(model=model, messages=messages, **fields), metadata=AUTH)
        return {
            "content": r.message.content,
            "tool_calls": [(c.id, c.name, c.arguments) for c in r.message.tool_calls],
            "finish_reason": r.finish_reason,
            "model": r.model,
            "choices": list(r.choices),
        }
    events = list(
        stub.StreamChatCompletion(
            pb.StreamChatCompletionRequest(model=model, messages=messages, **fields), metadata=AUTH
        )
    )
    assert events[0].HasField("decision") and events[-1].HasField("summary")
    assert len({(e.served_model, e.served_tier) for e in events}) == 1, "every event names the served model and tier"
    calls: dict[int, list[str]] = {}
    for e in events:
        if e.HasField("tool_call"):
            call = calls.setdefault(e.tool_call.index, ["", "", ""])
            call[0] = call[0] or e.tool_call.id
            call[1] = call[1] or e.tool_call.name
            call[2] += e.tool_call.arguments
    summary = events[-1].summary
    return {
        "content": "".join(e.delta for e in events if e.WhichOneof("event") == "delta" and e.choice_index == 0),
        "tool_calls": [tuple(calls[i]) for i in sorted(calls)],
        "finish_reason": summary.finish_reason,
        "model": summary.model,
        "events": events,
        "pieces": sum(1 for e in events if e.HasField("tool_call")),
    }


def _conversation(stub, model: str, stream: bool, between=None) -> tuple[dict, dict]:
    first = _ask(stub, model, [QUESTION], stream, tools=[TOOL])
    assert first["finish_reason"] == "tool_calls"
    [(call_id, name, arguments)] = first["tool_calls"]
    assert name == "get_weather" and json.loads(arguments) == json.loads(ARGUMENTS)
    if stream:
        assert first["pieces"] > 2
    if between is not None:
        between()
    history = [
        QUESTION,
        pb.ChatMessage(role="assistant", tool_calls=[pb.ToolCall(id=call_id, name=name, arguments=arguments)]),
        pb.ChatMessage(role="tool", tool_call_id=call_id, content=RESULT),
    ]
    second = _ask(stub, model, history, stream, tools=[TOOL])
    assert second["finish_reason"] == "stop" and second["content"].endswith(f"Tool result: {RESULT}")
    return first, second


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("model", ["strong-openai", "weak-anthropic"])
def test_grpc_two_step_tool_conversation(stub, fakes, model, stream):
    first, second = _conversation(stub, model, stream)
    assert first["model"] == second["model"] == model
    if "anthropic" in model:
        assert fakes[model].last_body["tools"][0]["input_schema"] == SCHEMA


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_grpc_tool_conversation_across_a_fallback(stub, fakes, stream):
    fakes["strong-openai"].reset(default=status(500))
    first, second = _conversation(stub, ROUTED, stream, between=lambda: fakes["strong-openai"].reset())
    assert first["model"] == "strong-anthropic" and second["model"] == "strong-openai"


@pytest.mark.parametrize("model", ["weak-openai", "weak-anthropic"])
def test_grpc_json_schema_output(stub, fakes, model):
    fakes[model].tool_arguments = '{"city": "Lyon"}'
    fmt = pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, name="place", schema_json=json.dumps(SCHEMA))
    for stream in (False, True):
        answer = _ask(stub, model, [QUESTION], stream, response_format=fmt)
        assert json.loads(answer["content"]) == {"city": "Lyon"} and answer["finish_reason"] == "stop"


def test_grpc_logprobs_and_n(stub, fakes):
    whole = _ask(stub, "weak-openai", [QUESTION], False, logprobs=True, top_logprobs=1, n=2)
    assert [c.index for c in whole["choices"]] == [0, 1]
    assert "".join(t.token for t in whole["choices"][0].logprobs) == whole["content"]
    assert len(whole["choices"][1].logprobs[0].top_logprobs) == 1
    streamed = _ask(stub, "weak-openai", [QUESTION], True, logprobs=True, n=2)
    events = streamed["events"]
    assert {e.choice_index for e in events if e.WhichOneof("event") == "delta"} == {0, 1}
    assert all(e.logprobs for e in events if e.WhichOneof("event") == "delta")
    assert list(events[-1].summary.finish_reasons) == ["stop", "stop"]
    with pytest.raises(grpc.RpcError) as err:
        _ask(stub, "weak-anthropic", [QUESTION], False, logprobs=True)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "provider anthropic" in err.value.details()


BAD = {
    "parameters_json not JSON": {"tools": [pb.Tool(name="t", parameters_json="{")]},
    "parameters_json not an object": {"tools": [pb.Tool(name="t", parameters_json="[1]")]},
    "tool name with spaces": {"tools": [pb.Tool(name="get weather")]},
    "oversized schema": {"tools": [pb.Tool(name="t", parameters_json=json.dumps({"d": "x" * 70_000}))]},
    "tool_choice names an unknown tool": {
        "tools": [TOOL],
        "tool_choice": pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_FUNCTION, name="rm_rf"),
    },
    "tool_choice mode out of range": {"tools": [TOOL], "tool_choice": pb.ToolChoice(mode=99)},
    "tool call names an unknown tool": {
        "tools": [TOOL],
        "messages": [QUESTION, pb.ChatMessage(role="assistant", tool_calls=[pb.ToolCall(id="c", name="rm_rf")])],
    },
    "tool result for an unknown call": {
        "tools": [TOOL],
        "messages": [QUESTION, pb.ChatMessage(role="tool", tool_call_id="nope", content="x")],
    },
    "schema_json not JSON": {
        "response_format": pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, name="p", schema_json="{")
    },
    "tool_error on a user turn": {"messages": [pb.ChatMessage(role="user", content="x", tool_error=True)]},
    "top_logprobs above 20": {"logprobs": True, "top_logprobs": 21},
    "n zero": {"n": 0},
    "n above the limit": {"n": 50},
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_grpc_bad_agent_fields_are_invalid_argument(stub, fakes, case):
    fields = {"messages": [QUESTION]} | BAD[case]
    with pytest.raises(grpc.RpcError) as err:
        stub.ChatCompletion(pb.ChatCompletionRequest(model="weak-openai", **fields), metadata=AUTH)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert sum(f.requests for f in fakes.values()) == 0


@pytest.mark.parametrize("model", ["weak-anthropic", "weak-openai"])
def test_grpc_tool_error_reaches_anthropic_models(stub, fakes, model):
    failed = pb.ChatMessage(role="tool", tool_call_id="c1", content="timeout", tool_error=True)
    call = pb.ChatMessage(role="assistant", tool_calls=[pb.ToolCall(id="c1", name="get_weather", arguments="{}")])
    answer = _ask(stub, model, [QUESTION, call, failed], False, tools=[TOOL])
    assert answer["content"].endswith("Tool result: timeout")
    sent = fakes[model].last_body["messages"][-1]
    if "anthropic" in model:
        assert sent["content"] == [{"type": "tool_result", "tool_use_id": "c1", "content": "timeout", "is_error": True}]
    else:  # chat completions have no error flag: the result's text
        assert sent == {"role": "tool", "content": "timeout", "tool_call_id": "c1"}


# ---------------------------------------------------------------- Route: the decision for a request with features

CALLED = pb.ChatMessage(role="assistant", tool_calls=[pb.ToolCall(id="c1", name="get_weather", arguments=ARGUMENTS)])
HISTORY = [QUESTION, CALLED, pb.ChatMessage(role="tool", tool_call_id="c1", content=RESULT)]


def _route(stub, model: str, messages: list[pb.ChatMessage], **fields) -> pb.RoutingDecision:
    return stub.Route(pb.RouteRequest(model=model, messages=messages, **fields), metadata=AUTH).decision


def test_grpc_route_takes_a_tool_conversation_and_names_the_model_that_serves_it(stub, fakes):
    decision = _route(stub, ROUTED, HISTORY, tools=[TOOL])
    assert decision.tier == pb.TIER_STRONG and decision.model == "strong-openai"
    assert sum(f.requests for f in fakes.values()) == 0, "Route calls no provider"
    served = _ask(stub, ROUTED, HISTORY, False, tools=[TOOL])
    assert served["model"] == decision.model and served["content"].endswith(f"Tool result: {RESULT}")
    # without the tools its calls name, the conversation is refused, as ChatCompletion refuses it
    with pytest.raises(grpc.RpcError) as err:
        _route(stub, ROUTED, HISTORY)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not in tools" in err.value.details()


JSON_FORMAT = pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_OBJECT)


@pytest.mark.parametrize(
    "fields",
    [{"logprobs": True}, {"n": 2}, {"tools": [TOOL], "response_format": JSON_FORMAT}],
    ids=["logprobs", "n", "json with tools"],
)
def test_grpc_route_narrows_the_decision_to_a_model_that_can_serve_the_features(fakes, fields):
    # the strong tier starts on an Anthropic model, which cannot serve these: Route names the next one
    config = gateway_config(fakes, strong=("strong-anthropic", "strong-openai"))
    with GatewayThread(config) as gw, grpc.insecure_channel(gw.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        assert _route(stub, ROUTED, [QUESTION]).model == "strong-anthropic"
        assert _route(stub, ROUTED, [QUESTION], **fields).model == "strong-openai"
        assert _ask(stub, ROUTED, [QUESTION], False, **fields)["model"] == "strong-openai"
        with pytest.raises(grpc.RpcError) as err:  # a plain model that cannot: refused, naming its provider
            _route(stub, "strong-anthropic", [QUESTION], **fields)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "provider anthropic" in err.value.details()


ROUTE_BAD = {
    "parameters_json not JSON": {"tools": [pb.Tool(name="t", parameters_json="{")]},
    "tool name with spaces": {"tools": [pb.Tool(name="get weather")]},
    "duplicate tool names": {"tools": [TOOL, TOOL]},
    "oversized schema": {"tools": [pb.Tool(name="t", parameters_json=json.dumps({"d": "x" * 70_000}))]},
    "tool call names an unknown tool": {"tools": [pb.Tool(name="other")], "messages": HISTORY},
    "schema_json not an object": {
        "response_format": pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, name="p", schema_json="[1]")
    },
    "response format type out of range": {"response_format": pb.ResponseFormat(type=7)},
    "n zero": {"n": 0},
    "n above the limit": {"n": 50},
}


@pytest.mark.parametrize("case", sorted(ROUTE_BAD))
def test_grpc_route_bad_features_are_invalid_argument(stub, fakes, case):
    fields = {"messages": [QUESTION]} | ROUTE_BAD[case]
    with pytest.raises(grpc.RpcError) as err:
        stub.Route(pb.RouteRequest(model=ROUTED, **fields), metadata=AUTH)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
