"""Domain errors of the gateway, each declaring its gRPC status and its HTTP status.

As in google-api-core's ``exceptions.py``, the class carries both codes, so the gRPC status
interceptor (``gateway.grpc_interceptors``) and the HTTP app (``gateway.http_app``) map errors
in exactly one place each and never send ``str(e)`` of an unexpected exception to a client
(that is a generic INTERNAL / 500 "internal error", logged). Messages of these classes are
written for clients: they never contain provider keys or prompt text.

::

    GatewayError                      INTERNAL            500
    ├── InvalidRequestError           INVALID_ARGUMENT    400  the request is wrong
    │   ├── UnsupportedParameterError INVALID_ARGUMENT    400  a feature the gateway lacks
    │   ├── UnknownModelError         INVALID_ARGUMENT    404
    │   ├── PayloadTooLargeError      RESOURCE_EXHAUSTED  413  body or message count
    │   ├── HeadersTooLargeError      (HTTP only)         431
    │   └── RequestTimeoutError       DEADLINE_EXCEEDED   408  headers or body too slow
    ├── NotFoundError                 NOT_FOUND           404
    ├── UnauthenticatedError          UNAUTHENTICATED     401
    ├── ProviderRejectedError         INVALID_ARGUMENT    400  a provider's 4xx, relayed sanitised
    ├── UpstreamUnavailableError      UNAVAILABLE         503  no model could serve it
    ├── DeadlineExceededError         DEADLINE_EXCEEDED   504  the whole-request deadline
    ├── StreamInterruptedError        UNAVAILABLE         502  a provider fault after the first token
    │   └── StreamStalledError        UNAVAILABLE         502  no chunk within the idle timeout
    ├── StoreUnavailableError         UNAVAILABLE         503  (learning)
    └── ShuttingDownError             UNAVAILABLE         503  could not finish within the drain
"""

from __future__ import annotations

from typing import Any

import grpc


class GatewayError(Exception):
    """Base class; subclasses set the codes a client receives."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500
    #: OpenAI error ``type`` and ``code`` fields.
    openai_type: str = "server_error"
    openai_code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def openai_body(self) -> dict[str, Any]:
        """The OpenAI error shape: ``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {"message": self.message, "type": self.openai_type, "param": self.param, "code": self.openai_code}
        }


class InvalidRequestError(GatewayError):
    """The request is malformed: bad JSON, missing messages, a value out of range."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400
    openai_type = "invalid_request_error"


class UnsupportedParameterError(InvalidRequestError):
    """The request uses an OpenAI feature the gateway does not implement (tools, ``n`` > 1, ...)."""

    openai_code = "unsupported_parameter"


class UnknownModelError(InvalidRequestError):
    """The model name is neither a configured model, a named policy nor ``router-<r>-<t>``."""

    http_status = 404
    openai_code = "model_not_found"


class PayloadTooLargeError(InvalidRequestError):
    """The request body, or its number of messages, exceeds the configured limit."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 413
    openai_code = "request_too_large"


class NotFoundError(GatewayError):
    """The thing a request names (e.g. a response id given as feedback) does not exist or is not the caller's."""

    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404
    openai_type = "invalid_request_error"
    openai_code = "not_found"


class HeadersTooLargeError(InvalidRequestError):
    """The request line and headers exceed ``limits.max_header_bytes`` or ``max_header_count``."""

    http_status = 431
    openai_code = "headers_too_large"


class RequestTimeoutError(InvalidRequestError):
    """The client did not send its headers or body in time (``limits.header_timeout_s`` / ``body_timeout_s``)."""

    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 408
    openai_code = "request_timeout"


class UnauthenticatedError(GatewayError):
    """No client API key, or one that is not configured."""

    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401
    openai_type = "invalid_request_error"
    openai_code = "invalid_api_key"


class ProviderRejectedError(GatewayError):
    """A provider refused the request with a non-retryable 4xx (the caller's problem)."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400
    openai_type = "invalid_request_error"
    openai_code = "provider_rejected"


class UpstreamUnavailableError(GatewayError):
    """Every model that could serve the request failed or was skipped."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503
    openai_type = "server_error"
    openai_code = "upstream_unavailable"


class DeadlineExceededError(GatewayError):
    """The request's overall deadline passed before a provider answered."""

    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504
    openai_type = "server_error"
    openai_code = "timeout"


class StreamInterruptedError(GatewayError):
    """A provider failed after the first token was sent; the stream cannot fall back."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 502
    openai_type = "server_error"
    openai_code = "stream_interrupted"


class StoreUnavailableError(GatewayError):
    """The learning store did not answer (feedback cannot be recorded now; try again later)."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503
    openai_type = "server_error"
    openai_code = "store_unavailable"


class StreamStalledError(StreamInterruptedError):
    """A started stream's provider sent nothing for ``server.stream_idle_timeout_s``."""

    openai_code = "stream_stalled"


class ShuttingDownError(GatewayError):
    """The gateway is shutting down and the request could not finish within the drain."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503
    openai_type = "server_error"
    openai_code = "shutting_down"


class ConfigError(Exception):
    """The configuration file is invalid (a start-up error; the message names the field)."""


INTERNAL_MESSAGE = "internal error"


def openai_error_body(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """HTTP status and OpenAI error body for any exception (unknown ones become a generic 500)."""
    if isinstance(exc, GatewayError):
        return exc.http_status, exc.openai_body()
    return 500, GatewayError(INTERNAL_MESSAGE).openai_body()


def grpc_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """gRPC status code and message for any exception (unknown ones become a generic INTERNAL)."""
    if isinstance(exc, GatewayError):
        return exc.grpc_code, exc.message
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
