"""Driving a real gateway with the real openai SDK and gRPC, counting outcomes (``harness.faults``).

A routed request whose scorer is down goes to the strong tier, so the fault suite's chain is
strong-openai → strong-anthropic → weak-openai → weak-anthropic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
import openai

from ferryman.gateway.v1 import gateway_pb2 as pb
from ferryman.gateway.v1 import gateway_pb2_grpc
from harness.faults import ANSWERED, CLEAN, CLEAN_HTTP_5XX, FALLBACK, LOST, Tally, classify_grpc
from harness.gateway import CLIENT_KEY, GatewayThread

ROUTED = "router-random-0.0"  # scorer unreachable in these tests → the strong tier
MESSAGES = [{"role": "user", "content": "Explain circuit breakers."}]
AUTH = (("authorization", f"Bearer {CLIENT_KEY}"),)


def sdk(gw: GatewayThread, timeout: float = 20) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.http_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=timeout)


def sdk_call(
    client: openai.OpenAI,
    *,
    stream: bool,
    model: str = ROUTED,
    messages: Sequence[dict[str, str]] = MESSAGES,
    expected: str | None = None,
    **kwargs: Any,
) -> tuple[str, str]:
    """One request through the openai SDK: (outcome, the answer's text or what went wrong).

    Answered needs the whole answer: a finish reason (a stream's last chunk) and, when given,
    the ``expected`` text.
    """
    try:
        if stream:
            raw = client.chat.completions.with_raw_response.create(
                model=model, messages=messages, stream=True, **kwargs
            )
            parts, finished = [], False
            for chunk in raw.parse():
                if chunk.choices:
                    parts.append(chunk.choices[0].delta.content or "")
                    finished = finished or chunk.choices[0].finish_reason is not None
            text = "".join(parts)
        else:
            raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, **kwargs)
            choice = raw.parse().choices[0]
            text, finished = choice.message.content or "", choice.finish_reason is not None
    except openai.APIStatusError as exc:
        clean = exc.status_code < 500 or exc.status_code in CLEAN_HTTP_5XX
        return (CLEAN if clean else LOST), f"HTTP {exc.status_code}: {exc.message}"
    except openai.APIConnectionError as exc:
        return LOST, f"connection: {exc!r}"
    except openai.APIError as exc:  # an error event at the end of a stream
        return CLEAN, exc.message
    except Exception as exc:  # the stream was cut: httpx raises from inside the iteration
        return LOST, repr(exc)
    if not finished or (expected is not None and text != expected):
        return LOST, f"incomplete answer {text!r}"
    return (FALLBACK if int(raw.headers["x-ferryman-fallbacks"]) else ANSWERED), text


def run_sdk(gw: GatewayThread, n: int, *, expected: str | None = None, **kwargs: Any) -> Tally:
    """``n`` requests one after another, alternating whole and streamed."""
    tally, client = Tally(), sdk(gw)
    for i in range(n):
        outcome, detail = sdk_call(client, stream=i % 2 == 1, expected=expected, **kwargs)
        tally.add(outcome, detail)
    return tally


def grpc_stub(gw: GatewayThread) -> tuple[grpc.Channel, gateway_pb2_grpc.GatewayServiceStub]:
    channel = grpc.insecure_channel(gw.grpc_target)
    return channel, gateway_pb2_grpc.GatewayServiceStub(channel)


def grpc_call(
    stub: gateway_pb2_grpc.GatewayServiceStub, request: pb.ChatCompletionRequest, *, stream: bool, timeout: float = 20
) -> tuple[str, str]:
    """One gRPC call: (outcome, the answer's text or the status)."""
    try:
        if stream:  # the two request messages have the same fields and numbers
            streamed = pb.StreamChatCompletionRequest.FromString(request.SerializeToString())
            events = list(stub.StreamChatCompletion(streamed, metadata=AUTH, timeout=timeout))
            text = "".join(e.delta for e in events if e.WhichOneof("event") == "delta")
            if events[-1].WhichOneof("event") != "summary":
                return LOST, "stream ended without a summary"
            return classify_grpc(grpc.StatusCode.OK, len(events[-1].summary.accounting.attempts) - 1), text
        reply = stub.ChatCompletion(request, metadata=AUTH, timeout=timeout)
        return classify_grpc(grpc.StatusCode.OK, len(reply.accounting.attempts) - 1), reply.message.content
    except grpc.RpcError as exc:
        code = exc.code()  # type: ignore[attr-defined]
        return classify_grpc(code), f"{code.name}: {exc.details()}"  # type: ignore[attr-defined]


def user(content: str) -> list[pb.ChatMessage]:
    return [pb.ChatMessage(role="user", content=content)]
