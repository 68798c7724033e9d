"""Agent traffic over HTTP (issue #14): tool calling, structured output, logprobs and n, through the real
``openai`` and ``anthropic`` SDKs, whole and streamed, against fake providers speaking each wire format.

A two-step tool conversation (the model calls a tool; the client answers with the tool's result; the
model answers in text) completes through an OpenAI-format and an Anthropic-format provider, with each
SDK as the client, and across a fallback from one provider to the other between the two steps.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import openai
import pydantic
import pytest

from harness.fake_provider import shape, status
from harness.gateway import CLIENT_KEY, GatewayThread, gateway_config

ROUTED = "router-mf-0.5"  # the scorer is unreachable here: the strong tier, chain strong-openai → strong-anthropic
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ARGUMENTS = '{"city": "Paris", "unit": "celsius"}'
RESULT = "18 C and sunny"
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture
def gw(fakes):
    for fake in fakes.values():
        fake.tool_arguments = ARGUMENTS
    with GatewayThread(gateway_config(fakes)) as running:
        yield running


def oai(gw: GatewayThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.http_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20)


def claude(gw: GatewayThread) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.http_url, api_key=CLIENT_KEY, max_retries=0, timeout=20)


# ---------------------------------------------------------------- OpenAI SDK


def _oai_step(client: openai.OpenAI, model: str, messages: list[dict[str, Any]], stream: bool) -> dict[str, Any]:
    """One chat completion as {content, tool_calls, finish_reason, model, ferryman, pieces} (streamed or not)."""
    if not stream:
        c = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER])
        message = c.choices[0].message
        calls = [
            {"id": t.id, "name": t.function.name, "arguments": t.function.arguments} for t in message.tool_calls or []
        ]
        return {
            "content": message.content or "",
            "tool_calls": calls,
            "finish_reason": c.choices[0].finish_reason,
            "model": c.model,
            "ferryman": c.model_extra["ferryman"],
        }
    text, calls, finish, models, served, pieces = [], {}, None, set(), [], 0
    for chunk in client.chat.completions.create(model=model, messages=messages, tools=[WEATHER], stream=True):
        models.add(chunk.model)
        served.append(chunk.model_extra["ferryman"])
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            for t in choice.delta.tool_calls or []:
                call = calls.setdefault(t.index, {"id": "", "name": "", "arguments": ""})
                call["id"] = call["id"] or t.id or ""
                call["name"] = call["name"] or (t.function.name or "")
                call["arguments"] += t.function.arguments or ""
                pieces += 1
            finish = choice.finish_reason or finish
    assert len(models) == 1, f"every chunk names the one served model: {models}"
    assert all(s["model"] == chunk.model for s in served), "every chunk's ferryman object names the served model"
    assert len({s["tier"] for s in served}) == 1
    return {
        "content": "".join(text),
        "tool_calls": [calls[i] for i in sorted(calls)],
        "finish_reason": finish,
        "model": models.pop(),
        "ferryman": served[-1],
        "pieces": pieces,
    }


def _oai_conversation(client: openai.OpenAI, model: str, stream: bool, between=None) -> tuple[dict, dict]:
    first = _oai_step(client, model, QUESTION, stream)
    assert first["finish_reason"] == "tool_calls" and first["content"] == ""
    [call] = first["tool_calls"]
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == json.loads(ARGUMENTS)
    if stream:
        assert first["pieces"] > 2, "tool-call arguments arrive in pieces"
    if between is not None:
        between()
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}
        ],
    }
    messages = [*QUESTION, assistant, {"role": "tool", "tool_call_id": call["id"], "content": RESULT}]
    second = _oai_step(client, model, messages, stream)
    assert second["finish_reason"] == "stop" and not second["tool_calls"]
    assert second["content"].endswith(f"Tool result: {RESULT}")
    return first, second


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("model", ["strong-openai", "weak-anthropic"])
def test_openai_sdk_two_step_tool_conversation(gw, fakes, model, stream):
    first, second = _oai_conversation(oai(gw), model, stream)
    assert first["model"] == second["model"] == model
    assert second["content"] == f"Answer from {model}. Tool result: {RESULT}"
    assert second["ferryman"]["model"] == model and second["ferryman"]["tier"] == "passthrough"
    sent = fakes[model].last_body
    if "anthropic" in model:  # translated: tool_use / tool_result blocks, the tool's input_schema
        assert sent["tools"] == [
            {
                "name": "get_weather",
                "description": "Current weather in a city",
                "input_schema": WEATHER["function"]["parameters"],
            }
        ]
        assistant, result = sent["messages"][1], sent["messages"][2]
        assert assistant["content"][0]["type"] == "tool_use" and assistant["content"][0]["input"]["city"] == "Paris"
        assert result["content"] == [
            {"type": "tool_result", "tool_use_id": assistant["content"][0]["id"], "content": RESULT}
        ]
    else:  # passed through as sent
        assert sent["tools"] == [WEATHER] and sent["messages"][2]["role"] == "tool"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_openai_sdk_tool_conversation_across_a_fallback(gw, fakes, stream):
    # step 1: strong-openai fails (500s), strong-anthropic serves; step 2: strong-openai is back and serves
    fakes["strong-openai"].reset(default=status(500))
    first, second = _oai_conversation(oai(gw), ROUTED, stream, between=lambda: fakes["strong-openai"].reset())
    assert first["model"] == "strong-anthropic" and second["model"] == "strong-openai"
    assert first["tool_calls"][0]["id"].startswith("toolu_")  # Anthropic's call id, answered through OpenAI
    sent = fakes["strong-openai"].last_body["messages"]
    assert sent[1]["tool_calls"][0]["id"] == sent[2]["tool_call_id"] == first["tool_calls"][0]["id"]


# ---------------------------------------------------------------- Anthropic SDK

CLAUDE_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _claude_step(client: anthropic.Anthropic, model: str, messages: list[dict[str, Any]], stream: bool) -> Any:
    kwargs = {"model": model, "max_tokens": 200, "messages": messages, "tools": [CLAUDE_TOOL]}
    if not stream:
        return client.messages.create(**kwargs), 0
    partial = 0
    with client.messages.stream(**kwargs) as events:
        for event in events:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                partial += 1
        return events.get_final_message(), partial


def _claude_conversation(client: anthropic.Anthropic, model: str, stream: bool, between=None) -> tuple[Any, Any]:
    first, pieces = _claude_step(client, model, QUESTION, stream)
    assert first.stop_reason == "tool_use"
    [use] = [b for b in first.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.input == json.loads(ARGUMENTS)
    if stream:
        assert pieces > 2, "tool input arrives as several input_json_delta events"
    if between is not None:
        between()
    messages = [
        *QUESTION,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": RESULT}]},
    ]
    second, _ = _claude_step(client, model, messages, stream)
    assert second.stop_reason == "end_turn"
    assert [b.type for b in second.content] == ["text"]
    assert second.content[0].text.endswith(f"Tool result: {RESULT}")
    return first, second


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("model", ["weak-openai", "strong-anthropic"])
def test_anthropic_sdk_two_step_tool_conversation(gw, fakes, model, stream):
    first, second = _claude_conversation(claude(gw), model, stream)
    assert first.model == second.model == model
    assert first.id.startswith("msg_") and second.content[0].text == f"Answer from {model}. Tool result: {RESULT}"
    if not stream:  # (the SDK's stream helper rebuilds the final message without extra fields)
        assert second.model_extra["ferryman"]["model"] == model
    sent = fakes[model].last_body
    if "openai" in model:  # translated to chat completions: tool_calls and a tool turn
        assert sent["tools"][0]["function"]["parameters"] == CLAUDE_TOOL["input_schema"]
        assert sent["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"
        assert sent["messages"][2] == {"role": "tool", "content": RESULT, "tool_call_id": first.content[0].id}


@pytest.mark.parametrize("model", ["strong-anthropic", "weak-openai"])
def test_anthropic_tool_result_errors_reach_anthropic_models(gw, fakes, model):
    call = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
    failed = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "timeout", "is_error": True}
    messages = [*QUESTION, {"role": "assistant", "content": [call]}, {"role": "user", "content": [failed]}]
    answer = claude(gw).messages.create(model=model, max_tokens=100, messages=messages, tools=[CLAUDE_TOOL])
    assert answer.content[0].text.endswith("Tool result: timeout")
    sent = fakes[model].last_body["messages"][2]
    if "anthropic" in model:
        assert sent["content"] == [failed]
    else:  # chat completions have no error flag: the result's text
        assert sent == {"role": "tool", "content": "timeout", "tool_call_id": "toolu_1"}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_anthropic_sdk_tool_conversation_across_a_fallback(gw, fakes, stream):
    fakes["strong-openai"].reset(default=status(500))
    first, second = _claude_conversation(claude(gw), ROUTED, stream, between=lambda: fakes["strong-openai"].reset())
    assert first.model == "strong-anthropic" and second.model == "strong-openai"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("model", ["weak-anthropic", "weak-openai"])
def test_stop_sequences_through_the_anthropic_sdk(gw, fakes, model, stream):
    kwargs = {"model": model, "max_tokens": 50, "messages": QUESTION, "stop_sequences": ["from", "xyz"]}
    if stream:
        with claude(gw).messages.stream(**kwargs) as events:
            answer = events.get_final_message()
    else:
        answer = claude(gw).messages.create(**kwargs)
    assert answer.content[0].text == "Answer "
    if "anthropic" in model:  # the provider says which sequence matched: the client gets it back
        assert (answer.stop_reason, answer.stop_sequence) == ("stop_sequence", "from")
        assert fakes[model].last_body["stop_sequences"] == ["from", "xyz"]
    else:  # chat completions do not say which: a plain end of turn
        assert (answer.stop_reason, answer.stop_sequence) == ("end_turn", None)
        assert fakes[model].last_body["stop"] == ["from", "xyz"]
    whole = oai(gw).chat.completions.create(model=model, messages=QUESTION, stop=["from"])
    assert whole.choices[0].message.content == "Answer " and whole.choices[0].finish_reason == "stop"


def test_anthropic_sdk_stream_events_carry_model_and_tier(gw, fakes):
    events = list(claude(gw).messages.create(model="weak-openai", max_tokens=50, messages=QUESTION, stream=True))
    kinds = [e.type for e in events]
    extras = [e.model_extra["ferryman"] for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "content_block_delta" in kinds
    assert events[0].message.model == "weak-openai"
    assert all(e["model"] == "weak-openai" and e["tier"] == "passthrough" for e in extras)
    assert "decision" in extras[0] and "attempts" in extras[-2]  # message_start: decision; message_delta: accounting
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == "Answer from weak-openai." and events[-2].usage.output_tokens == 3


def test_keyless_local_models_get_no_key_and_serve_tool_conversations(fakes):
    # local servers (Ollama, vLLM, llama.cpp) declare no key: the gateway starts without any and sends none
    keyless = {name: {"api_key_env": None} for name in fakes}
    with GatewayThread(gateway_config(fakes, model_overrides=keyless)) as running:
        for model in ("weak-openai", "weak-anthropic"):
            fakes[model].tool_arguments = ARGUMENTS
            _, second = _oai_conversation(oai(running), model, stream=True)
            assert second["model"] == model
            headers = fakes[model].last_headers
            assert "authorization" not in headers and "x-api-key" not in headers, headers


# ---------------------------------------------------------------- structured output

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
PERSON_JSON = '{"name": "Ada", "age": 36}'


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("model", ["weak-openai", "weak-anthropic"])
def test_json_schema_output(gw, fakes, model, stream):
    fakes[model].tool_arguments = PERSON_JSON
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    client = oai(gw)
    if stream:
        chunks = list(client.chat.completions.create(model=model, messages=QUESTION, response_format=fmt, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    else:
        answer = client.chat.completions.create(model=model, messages=QUESTION, response_format=fmt)
        text, finish = answer.choices[0].message.content, answer.choices[0].finish_reason
    assert json.loads(text) == json.loads(PERSON_JSON) and finish == "stop"
    sent = fakes[model].last_body
    if "anthropic" in model:  # the closest equivalent: a forced tool whose input schema is the schema
        assert sent["tools"] == [
            {"name": "person", "description": sent["tools"][0]["description"], "input_schema": PERSON}
        ]
        assert sent["tool_choice"] == {"type": "tool", "name": "person"}
    else:
        assert sent["response_format"] == fmt


def test_json_object_output_through_anthropic(gw, fakes):
    fakes["weak-anthropic"].tool_arguments = PERSON_JSON
    answer = oai(gw).chat.completions.create(
        model="weak-anthropic", messages=QUESTION, response_format={"type": "json_object"}
    )
    assert json.loads(answer.choices[0].message.content) == json.loads(PERSON_JSON)
    assert fakes["weak-anthropic"].last_body["tools"][0]["input_schema"] == {"type": "object"}


class Person(pydantic.BaseModel):
    name: str
    age: int


@pytest.mark.parametrize("model", ["weak-openai", "weak-anthropic"])
def test_anthropic_sdk_structured_output(gw, fakes, model):
    # output_config.format, as messages.parse / messages.stream send it for a pydantic type
    fakes[model].tool_arguments = PERSON_JSON
    client = claude(gw)
    parsed = client.messages.parse(model=model, max_tokens=100, messages=QUESTION, output_format=Person)
    assert parsed.parsed_output == Person(name="Ada", age=36) and parsed.stop_reason == "end_turn"
    sent = fakes[model].last_body
    if "anthropic" in model:  # the closest equivalent: a forced tool
        schema = sent["tools"][0]["input_schema"]
        assert sent["tool_choice"] == {"type": "tool", "name": "output"} and len(sent["tools"]) == 1
    else:
        assert sent["response_format"]["type"] == "json_schema" and sent["response_format"]["json_schema"]["name"]
        schema = sent["response_format"]["json_schema"]["schema"]
    assert set(schema["properties"]) == {"name", "age"}
    with client.messages.stream(model=model, max_tokens=100, messages=QUESTION, output_format=Person) as events:
        text = "".join(events.text_stream)
        final = events.get_final_message()
    assert json.loads(text) == json.loads(PERSON_JSON) and final.parsed_output == Person(name="Ada", age=36)
    # the beta's top-level output_format, with a plain schema
    r = httpx.post(
        gw.http_url + "/v1/messages",
        json={
            "model": model,
            "max_tokens": 100,
            "messages": QUESTION,
            "output_format": {"type": "json_schema", "schema": PERSON},
        },
        headers={"x-api-key": CLIENT_KEY},
        timeout=10,
    )
    assert r.status_code == 200 and json.loads(r.json()["content"][0]["text"]) == json.loads(PERSON_JSON)


def test_json_with_tools_is_refused_for_anthropic_naming_the_provider(gw, fakes):
    fmt = {"type": "json_object"}
    with pytest.raises(openai.BadRequestError) as err:
        oai(gw).chat.completions.create(model="weak-anthropic", messages=QUESTION, tools=[WEATHER], response_format=fmt)
    assert err.value.code == "unsupported_parameter" and err.value.param == "response_format"
    assert "provider anthropic" in err.value.message and "weak-anthropic" in err.value.message
    assert fakes["weak-anthropic"].requests == 0
    # routed: the chain keeps only models that can (strong-openai first)
    answer = oai(gw).chat.completions.create(model=ROUTED, messages=QUESTION, tools=[WEATHER], response_format=fmt)
    assert answer.model == "strong-openai"


# ---------------------------------------------------------------- logprobs and n


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_logprobs_and_n_from_an_openai_model(gw, fakes, stream):
    client = oai(gw)
    kwargs = {"model": "weak-openai", "messages": QUESTION, "logprobs": True, "top_logprobs": 2, "n": 2}
    if stream:
        texts: dict[int, str] = {}
        tokens: dict[int, list[str]] = {}
        finishes = {}
        for chunk in client.chat.completions.create(**kwargs, stream=True):
            for c in chunk.choices:
                texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
                if c.logprobs and c.logprobs.content:
                    tokens.setdefault(c.index, []).extend(t.token for t in c.logprobs.content)
                    assert len(c.logprobs.content[0].top_logprobs) == 2
                if c.finish_reason:
                    finishes[c.index] = c.finish_reason
        assert finishes == {0: "stop", 1: "stop"}
    else:
        answer = client.chat.completions.create(**kwargs)
        texts = {c.index: c.message.content for c in answer.choices}
        tokens = {c.index: [t.token for t in c.logprobs.content] for c in answer.choices}
        assert len(answer.choices[0].logprobs.content[0].top_logprobs) == 2
    assert texts == {0: "Answer from weak-openai.", 1: "Answer from weak-openai. (choice 2)"}
    assert "".join(tokens[0]) == texts[0]
    assert fakes["weak-openai"].last_body["n"] == 2 and fakes["weak-openai"].last_body["top_logprobs"] == 2


@pytest.mark.parametrize("field", ["logprobs", "n"])
def test_logprobs_and_n_are_refused_for_anthropic_and_narrow_a_routed_chain(gw, fakes, field):
    extra = {"logprobs": True} if field == "logprobs" else {"n": 2}
    with pytest.raises(openai.BadRequestError) as err:
        oai(gw).chat.completions.create(model="strong-anthropic", messages=QUESTION, **extra)
    assert err.value.param == field and "provider anthropic" in err.value.message
    # routed, the strong tier's OpenAI model failing: the next model that can is the weak tier's OpenAI model
    fakes["strong-openai"].reset(default=status(500))
    answer = oai(gw).chat.completions.create(model=ROUTED, messages=QUESTION, **extra)
    assert answer.model == "weak-openai"
    assert [a["model"] for a in answer.model_extra["ferryman"]["attempts"]] == ["strong-openai", "weak-openai"]
    assert fakes["strong-anthropic"].requests == fakes["weak-anthropic"].requests == 0


# ---------------------------------------------------------------- what providers answer is checked


def test_a_provider_calling_an_unknown_tool_is_a_provider_fault(gw, fakes):
    bad_call = {"id": "c1", "type": "function", "function": {"name": "rm_rf", "arguments": "{}"}}
    choice = {"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [bad_call]}}
    fakes["strong-openai"].reset(default=shape({"choices": [choice | {"finish_reason": "tool_calls"}]}))
    answer = oai(gw).chat.completions.create(model=ROUTED, messages=QUESTION, tools=[WEATHER])
    assert answer.model == "strong-anthropic"
    attempt = answer.model_extra["ferryman"]["attempts"][0]
    assert attempt["outcome"] == "transient_error" and "unknown tool" in attempt["error"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_tool_arguments_that_are_not_json_are_a_provider_fault(gw, fakes, stream):
    fakes["strong-openai"].tool_arguments = '{"city": "Par'
    if not stream:  # a whole answer: retried, then the next model
        answer = oai(gw).chat.completions.create(model=ROUTED, messages=QUESTION, tools=[WEATHER])
        assert answer.model == "strong-anthropic"
        return
    # a stream: the pieces have reached the client; it ends with an error event, not [DONE]
    with pytest.raises(openai.APIError) as err:
        list(oai(gw).chat.completions.create(model=ROUTED, messages=QUESTION, tools=[WEATHER], stream=True))
    assert "not a JSON object" in str(err.value)


# ---------------------------------------------------------------- bad input: every new field → 4xx, no provider call

CALL = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
TOOL_TURNS = [*QUESTION, {"role": "assistant", "content": None, "tool_calls": [CALL]}]


def _deep(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


def _tool(name: str = "get_weather", parameters: Any = None) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": name}
    if parameters is not None:
        fn["parameters"] = parameters
    return {"type": "function", "function": fn}


OPENAI_BAD = {
    "tools not a list": ({"tools": {"a": 1}}, 400, "tools"),
    "tool without function": ({"tools": [{"type": "function"}]}, 400, "tools[0].function"),
    "tool name not a string": ({"tools": [_tool(name=5)]}, 400, "tools[0].function.name"),
    "tool name with spaces": ({"tools": [_tool(name="get weather")]}, 400, "tools[0].name"),
    "tool parameters not an object": ({"tools": [_tool(parameters=[1])]}, 400, "tools[0].function.parameters"),
    "duplicate tool names": ({"tools": [_tool(), _tool()]}, 400, "tools[1].name"),
    "custom tool type": ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, 400, "tools[0].type"),
    "too many tools": ({"tools": [_tool(name=f"t{i}") for i in range(129)]}, 400, "tools"),
    "oversized schema": (
        {"tools": [_tool(parameters={"type": "object", "description": "x" * 70_000})]},
        400,
        "tools[0].parameters",
    ),
    "schema nested too deep": ({"tools": [_tool(parameters=_deep(20))]}, 400, "tools[0].parameters"),
    "tool_choice a number": ({"tools": [_tool()], "tool_choice": 5}, 400, "tool_choice"),
    "tool_choice unknown mode": ({"tools": [_tool()], "tool_choice": "always"}, 400, "tool_choice"),
    "tool_choice names an unknown tool": (
        {"tools": [_tool()], "tool_choice": {"type": "function", "function": {"name": "rm_rf"}}},
        400,
        "tool_choice",
    ),
    "tool_choice required without tools": ({"tool_choice": "required"}, 400, "tool_choice"),
    "tool call names an unknown tool": (
        {
            "messages": [*QUESTION, {"role": "assistant", "tool_calls": [CALL | {"function": {"name": "rm_rf"}}]}],
            "tools": [_tool()],
        },
        400,
        "messages[1].tool_calls[0].function.name",
    ),
    "tool call arguments not JSON": (
        {
            "messages": [
                *QUESTION,
                {"role": "assistant", "tool_calls": [CALL | {"function": {"name": "get_weather", "arguments": "{"}}]},
            ],
            "tools": [_tool()],
        },
        400,
        "messages[1].tool_calls[0].function.arguments",
    ),
    "tool_calls not a list": (
        {"messages": [*QUESTION, {"role": "assistant", "tool_calls": "x"}], "tools": [_tool()]},
        400,
        "messages[1].tool_calls",
    ),
    "tool result for an unknown call": (
        {"messages": [*TOOL_TURNS, {"role": "tool", "tool_call_id": "nope", "content": "x"}], "tools": [_tool()]},
        400,
        "messages[2].tool_call_id",
    ),
    "tool_call_id not a string": (
        {"messages": [*TOOL_TURNS, {"role": "tool", "tool_call_id": 7, "content": "x"}], "tools": [_tool()]},
        400,
        "messages[2].tool_call_id",
    ),
    "response_format a string": ({"response_format": "json"}, 400, "response_format"),
    "response_format unknown type": ({"response_format": {"type": "yaml"}}, 400, "response_format.type"),
    "json_schema without a name": (
        {"response_format": {"type": "json_schema", "json_schema": {"schema": PERSON}}},
        400,
        "response_format.json_schema.name",
    ),
    "json_schema schema not an object": (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": "x"}}},
        400,
        "response_format.json_schema.schema",
    ),
    "json_schema oversized": (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": {"d": "x" * 70_000}}}},
        400,
        "response_format.json_schema.schema",
    ),
    "logprobs not a boolean": ({"logprobs": "yes"}, 400, "logprobs"),
    "top_logprobs above 20": ({"logprobs": True, "top_logprobs": 30}, 400, "top_logprobs"),
    "top_logprobs without logprobs": ({"top_logprobs": 3}, 400, "top_logprobs"),
    "n not an integer": ({"n": "2"}, 400, "n"),
    "n zero": ({"n": 0}, 400, "n"),
    "n above the limit": ({"n": 100}, 400, "n"),
    "parallel_tool_calls not a boolean": ({"parallel_tool_calls": "no"}, 400, "parallel_tool_calls"),
}


@pytest.mark.parametrize("case", sorted(OPENAI_BAD))
def test_bad_agent_fields_are_4xx_before_any_provider_call(gw, fakes, case):
    fields, code, param = OPENAI_BAD[case]
    body = {"model": "weak-openai", "messages": QUESTION} | fields
    r = httpx.post(
        gw.http_url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {CLIENT_KEY}"}, timeout=10
    )
    assert r.status_code == code, r.text
    assert r.json()["error"]["param"] == param and r.json()["error"]["type"] == "invalid_request_error"
    assert sum(f.requests for f in fakes.values()) == 0


MESSAGES_BAD = {
    "max_tokens missing": ({"max_tokens": None}, 400, "max_tokens"),
    "max_tokens a string": ({"max_tokens": "10"}, 400, "max_tokens"),
    "messages empty": ({"messages": []}, 400, "messages"),
    "role system in messages": ({"messages": [{"role": "system", "content": "x"}]}, 400, "messages[0].role"),
    "content a number": ({"messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
    "image block": (
        {"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
        400,
        "messages[0].content[0].type",
    ),
    "tools not a list": ({"tools": "x"}, 400, "tools"),
    "tool without input_schema": ({"tools": [{"name": "get_weather"}]}, 400, "tools[0].input_schema"),
    "server tool type": ({"tools": [{"type": "web_search_20250305", "name": "web"}]}, 400, "tools[0].type"),
    "oversized input_schema": (
        {"tools": [CLAUDE_TOOL | {"input_schema": {"type": "object", "description": "x" * 70_000}}]},
        400,
        "tools[0].parameters",
    ),
    "tool_choice unknown type": ({"tools": [CLAUDE_TOOL], "tool_choice": {"type": "maybe"}}, 400, "tool_choice.type"),
    "tool_choice names an unknown tool": (
        {"tools": [CLAUDE_TOOL], "tool_choice": {"type": "tool", "name": "rm_rf"}},
        400,
        "tool_choice",
    ),
    "tool_use names an unknown tool": (
        {
            "tools": [CLAUDE_TOOL],
            "messages": [
                *QUESTION,
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "rm_rf", "input": {}}]},
            ],
        },
        400,
        "messages[1].tool_calls[0].function.name",
    ),
    "tool_use input not an object": (
        {
            "tools": [CLAUDE_TOOL],
            "messages": [
                *QUESTION,
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "get_weather", "input": 3}]},
            ],
        },
        400,
        "messages[1].content[0].input",
    ),
    "tool_result for an unknown call": (
        {
            "tools": [CLAUDE_TOOL],
            "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "r"}]}],
        },
        400,
        "messages[0].tool_call_id",
    ),
    "thinking": ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, 400, "thinking"),
    "output_config not an object": ({"output_config": "json"}, 400, "output_config"),
    "output_config unknown key": ({"output_config": {"verbosity": "low"}}, 400, "output_config.verbosity"),
    "output format not json_schema": (
        {"output_config": {"format": {"type": "yaml"}}},
        400,
        "output_config.format.type",
    ),
    "output format without a schema": (
        {"output_config": {"format": {"type": "json_schema"}}},
        400,
        "output_config.format.schema",
    ),
    "output format twice": (
        {
            "output_config": {"format": {"type": "json_schema", "schema": PERSON}},
            "output_format": {"type": "json_schema", "schema": PERSON},
        },
        400,
        "output_format",
    ),
    "output schema oversized": (
        {"output_format": {"type": "json_schema", "schema": {"type": "object", "description": "x" * 70_000}}},
        400,
        "response_format.json_schema.schema",
    ),
    "output format with tools, Anthropic model": (
        {"tools": [CLAUDE_TOOL], "output_format": {"type": "json_schema", "schema": PERSON}},
        400,
        "response_format",
    ),
    "stream not a boolean": ({"stream": "yes"}, 400, "stream"),
    "unknown model": ({"model": "gpt-9"}, 404, "model"),
}


@pytest.mark.parametrize("case", sorted(MESSAGES_BAD))
def test_bad_messages_requests_are_anthropic_shaped_4xx(gw, fakes, case):
    fields, code, param = MESSAGES_BAD[case]
    body = {"model": "weak-anthropic", "max_tokens": 100, "messages": QUESTION} | fields
    body = {k: v for k, v in body.items() if v is not None}
    r = httpx.post(gw.http_url + "/v1/messages", json=body, headers={"x-api-key": CLIENT_KEY}, timeout=10)
    assert r.status_code == code, r.text
    err = r.json()
    assert err["type"] == "error" and err["error"]["param"] == param, err
    assert err["error"]["type"] == ("not_found_error" if code == 404 else "invalid_request_error")
    assert sum(f.requests for f in fakes.values()) == 0


def test_anthropic_sdk_count_tokens_estimates_without_calling_a_provider(gw, fakes):
    client = claude(gw)
    plain = client.messages.count_tokens(model="weak-anthropic", messages=QUESTION)
    assert plain.input_tokens == 8  # 29 characters, about 4 a token
    routed = client.messages.count_tokens(model="ferryman-balanced", messages=QUESTION, tools=[CLAUDE_TOOL])
    assert routed.input_tokens > plain.input_tokens and routed.model_extra["ferryman"] == {"estimated": True}
    system = client.messages.count_tokens(model=ROUTED, system="Answer briefly. " * 10, messages=QUESTION)
    assert system.input_tokens == plain.input_tokens + 40
    # a stream's message_start gives the same estimate
    with client.messages.stream(model="weak-openai", max_tokens=50, messages=QUESTION, tools=[CLAUDE_TOOL]) as events:
        started = next(e for e in events if e.type == "message_start")
        list(events)
    assert started.message.usage.input_tokens == routed.input_tokens
    calls = fakes["weak-openai"].requests
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="gpt-9", messages=QUESTION)
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.count_tokens(model="weak-openai", messages=QUESTION, tools=[CLAUDE_TOOL | {"name": "a b"}])
    assert "tools[0].name" in str(err.value)
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=gw.http_url, api_key="wrong", max_retries=0).messages.count_tokens(
            model="weak-openai", messages=QUESTION
        )
    assert fakes["weak-openai"].requests == calls and sum(f.requests for f in fakes.values()) == calls == 1


def test_both_sdks_list_the_same_models(gw, fakes):
    listed = list(claude(gw).models.list())  # x-api-key, Anthropic's page shape
    ids = [m.id for m in oai(gw).models.list()]
    assert [m.id for m in listed] == ids and {"ferryman-balanced", "weak-anthropic", "strong-openai"} <= set(ids)
    assert all(m.type == "model" and m.display_name == m.id and m.created_at.year >= 2024 for m in listed)
    assert listed[0].model_extra["ferryman"]["type"] == "policy"
    with pytest.raises(anthropic.AuthenticationError):
        list(anthropic.Anthropic(base_url=gw.http_url, api_key="wrong", max_retries=0).models.list())


def test_messages_errors_through_the_anthropic_sdk(gw, fakes):
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=gw.http_url, api_key="wrong", max_retries=0).messages.create(
            model="weak-anthropic", max_tokens=10, messages=QUESTION
        )
    with pytest.raises(anthropic.BadRequestError) as err:
        claude(gw).messages.create(
            model="weak-openai", max_tokens=10, messages=QUESTION, tools=[CLAUDE_TOOL | {"name": "bad name"}]
        )
    assert "tools[0].name" in str(err.value)
    fakes["weak-openai"].reset(default=status(503))
    fakes["weak-anthropic"].reset(default=status(503))
    with pytest.raises(anthropic.InternalServerError) as unavailable:
        claude(gw).messages.create(model="weak-openai", max_tokens=10, messages=QUESTION)
    assert unavailable.value.status_code == 503 and unavailable.value.body["error"]["type"] == "overloaded_error"


def test_a_missing_key_on_the_messages_api_names_both_headers_it_takes(gw, fakes):
    """Was "missing API key: send 'Authorization: Bearer <key>'" on /v1/messages too, although the
    Anthropic SDK sends x-api-key there; the OpenAI-compatible API keeps naming its one header."""
    no_key = {"x-api-key": anthropic.omit, "authorization": anthropic.omit}
    both = "missing API key: send 'x-api-key: <key>' or 'Authorization: Bearer <key>'"
    with pytest.raises(anthropic.AuthenticationError) as err:
        claude(gw).messages.create(model="weak-anthropic", max_tokens=10, messages=QUESTION, extra_headers=no_key)
    assert err.value.body["error"]["message"] == both
    with pytest.raises(anthropic.AuthenticationError) as err:
        claude(gw).messages.count_tokens(model="weak-anthropic", messages=QUESTION, extra_headers=no_key)
    assert err.value.body["error"]["message"] == both
    with pytest.raises(openai.AuthenticationError) as denied:
        oai(gw).chat.completions.create(
            model="weak-openai", messages=QUESTION, extra_headers={"authorization": openai.omit}
        )
    assert denied.value.body["message"] == "missing API key: send 'Authorization: Bearer <key>'"
    assert sum(f.requests for f in fakes.values()) == 0
