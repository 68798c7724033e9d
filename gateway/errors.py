"""Domain errors of the gateway, each declaring its gRPC status and its HTTP status.

As in google-api-core's ``exceptions.py``, the class carries both codes, so the gRPC
servicer and the HTTP app map errors in exactly one place each (``to_grpc`` /
``to_openai_body``) and never send ``str(e)`` of an unexpected exception to a client.
Messages of these classes are written for clients: they never contain provider keys or
prompt text.
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
    """The request body exceeds the configured limit."""

    http_status = 413
    openai_code = "request_too_large"


class NotFoundError(GatewayError):
    """The thing a request names (e.g. a response id given as feedback) does not exist or is not the caller's."""

    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404
    openai_type = "invalid_request_error"
    openai_code = "not_found"


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
