"""Anthropic-compatible HTTP endpoint: ``POST /v1/messages``, whole or streamed, tools included, and
``POST /v1/messages/count_tokens`` (an estimate of the input tokens).

Clients built on Anthropic's SDK point their base URL at the gateway (``anthropic.Anthropic(
base_url="http://gateway:8080", api_key=FERRYMAN_KEY)``); the request is translated into the
core's chat request (:mod:`gateway.formats.anthropic`), routed by the same policies, model names
and ``routing`` options as ``/v1/chat/completions``, checked by the same validator, served by
any provider (an OpenAI-compatible model's tool calls come back as ``tool_use`` blocks), and
answered in the Messages API's shape. The client key may come as ``x-api-key`` (what the SDK
sends) or ``Authorization: Bearer``.

Every answer carries a ``ferryman`` object (served model and tier; a whole answer's also the
decision and accounting) and the ``x-ferryman-*`` headers; a stream's every event carries the
served model and tier, its first the decision, its ``message_delta`` the accounting. Response
ids are ``msg_`` + 24 hex digits (``POST /v1/feedback`` takes them). Errors use Anthropic's shape,
``{"type": "error", "error": {"type", "message"}}`` (plus ``param`` and ``code``, as in the OpenAI
errors), with the same HTTP statuses; a stream always ends with ``message_stop`` or an
``event: error``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from gateway.cost import estimate_prompt_tokens
from gateway.errors import INTERNAL_MESSAGE, GatewayError
from gateway.formats import anthropic as fmt
from gateway.http_app import _read_body, accounting_headers, authorization, decision_headers, with_conversation
from gateway.openai_format import accounting_json, decision_json, decode_body, read_routing, served_json
from gateway.service import Gateway, StreamResult
from gateway.types import ChatRequest, StreamEnd

log = logging.getLogger(__name__)

#: Anthropic's error ``type`` for an HTTP status (anything else: ``api_error``).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}
ID_PREFIX = "msg_"
#: How to send the client key here, as the missing-key error says it (the SDK sends ``x-api-key``).
KEY_HOW = "'x-api-key: <key>' or 'Authorization: Bearer <key>'"


def error_body(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """HTTP status and Anthropic error body for any exception (unknown ones: a generic 500)."""
    if not isinstance(exc, GatewayError):
        log.error("unexpected error serving /v1/messages", exc_info=exc)
        exc = GatewayError(INTERNAL_MESSAGE)
    body = fmt.error_json(ERROR_TYPES.get(exc.http_status, "api_error"), exc.message)
    body["error"] |= {"param": exc.param, "code": exc.openai_code}
    return exc.http_status, body


def _error_response(exc: BaseException, *, close: bool = False) -> JSONResponse:
    status, body = error_body(exc)
    return JSONResponse(body, status_code=status, headers={"connection": "close"} if close else None)


class MessagesAPI:
    """``POST /v1/messages`` over one :class:`Gateway`."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def _read(self, request: Request, *, count_only: bool = False) -> tuple[ChatRequest, bool] | Response:
        """The body as a chat request and whether to stream it, or the error response to send."""
        try:
            tenant = self.gateway.authenticate(authorization(request.headers), how=KEY_HOW)
            raw = await _read_body(request, self.gateway.config.limits)
        except GatewayError as exc:
            return _error_response(exc, close=True)
        try:
            data = decode_body(raw)
            chat, stream = fmt.read_request(data, count_only=count_only)
            chat = replace(chat, routing=read_routing(data.get("routing")), tenant=tenant)
            return with_conversation(chat, request.headers), stream
        except Exception as exc:
            return _error_response(exc)

    async def messages(self, request: Request) -> Response:
        read = await self._read(request)
        if isinstance(read, Response):
            return read
        chat, stream = read
        try:
            if stream:
                return self._stream_response(await self.gateway.start_stream(chat, id_prefix=ID_PREFIX))
            result = await self.gateway.chat(chat, id_prefix=ID_PREFIX)
        except Exception as exc:
            return _error_response(exc)
        acc = result.accounting
        body = fmt.message_json(result.id, acc.served_model, result.completion)
        body["ferryman"] = served_json(acc) | {"decision": decision_json(result.decision)} | accounting_json(acc)
        return JSONResponse(body, headers=decision_headers(result.decision) | accounting_headers(acc, with_cost=True))

    async def count_tokens(self, request: Request) -> Response:
        """``POST /v1/messages/count_tokens``: ``{"input_tokens": N}``, an estimate (about four characters
        a token over the turns, tool calls, tools and output schema; no provider is asked, and the
        model that would serve the request may count differently), checked like ``/v1/messages``."""
        read = await self._read(request, count_only=True)
        if isinstance(read, Response):
            return read
        try:
            tokens = self.gateway.count_tokens(read[0])
        except Exception as exc:
            return _error_response(exc)
        return JSONResponse({"input_tokens": tokens, "ferryman": {"estimated": True}})

    def _stream_response(self, started: StreamResult) -> StreamingResponse:
        headers = decision_headers(started.decision) | accounting_headers(started.accounting, with_cost=False)
        return StreamingResponse(
            self._events(started), media_type="text/event-stream", headers=headers | {"cache-control": "no-cache"}
        )

    async def _events(self, started: StreamResult) -> AsyncIterator[bytes]:
        """``message_start`` … ``message_stop``; or, whatever goes wrong, an ``error`` event last."""
        served = served_json(started.accounting)
        decided = served | {"decision": decision_json(started.decision)}
        out = fmt.StreamWriter(started.id, started.accounting.served_model, {"ferryman": decided})
        prompt_tokens = estimate_prompt_tokens(started.request)
        try:
            for text in out.start(prompt_tokens):
                yield text.encode()
            out.extra = {"ferryman": served}
            async for event in self.gateway.stream_events(started):
                for text in out.event(event):
                    yield text.encode()
        except Exception as exc:  # after the first event there is no fallback: an explicit error event
            _, body = error_body(exc)
            yield fmt.sse("error", {"error": body["error"]}).encode()
            return
        done = started.completion
        assert done is not None, "stream_events ends with a completion or raises"
        out.extra = {"ferryman": served | accounting_json(started.accounting)}
        for text in out.finish(StreamEnd(done.finish_reason, done.usage, stop_sequence=done.stop_sequence), done.usage):
            yield text.encode()
