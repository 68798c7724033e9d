"""Domain exceptions of the scorer.

Every error the core raises is one of these; the gRPC layer maps them to
status codes in exactly one place (``scorer.interceptors.StatusInterceptor``). Anything
else is a bug and reaches clients as INTERNAL with a generic message.

    ScorerError (INTERNAL)
    ├── InvalidInputError (INVALID_ARGUMENT)
    │   └── RequestTooLargeError       larger than the method's byte limit, refused unparsed
    ├── UnknownRouterError (NOT_FOUND)
    ├── UnknownModelError (INVALID_ARGUMENT)
    ├── OverloadedError (RESOURCE_EXHAUSTED)   the caller's queued share or the whole queue is full
    ├── DeadlineExceededError (DEADLINE_EXCEEDED)
    ├── ArtifactError (FAILED_PRECONDITION)   start-up only
    └── UnavailableError (UNAVAILABLE)
        └── ShuttingDownError
"""

from __future__ import annotations

import grpc


class ScorerError(Exception):
    """Base class; ``code`` is the gRPC status a client receives."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidInputError(ScorerError):
    """The request is malformed (empty prompt, bad field value, too large)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class RequestTooLargeError(InvalidInputError):
    """The request is larger than its method accepts (checked before parsing)."""


class UnknownRouterError(ScorerError):
    """The request names a router that is not loaded."""

    code = grpc.StatusCode.NOT_FOUND


class UnknownModelError(ScorerError):
    """The request names a model the router cannot score."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class OverloadedError(ScorerError):
    """The queue holds too much work (the caller's share or in all); the client should back off and retry."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceededError(ScorerError):
    """The request's deadline passed before inference started."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ArtifactError(ScorerError):
    """A router artifact or the encoder is missing or corrupt (a start-up error)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class UnavailableError(ScorerError):
    """The server cannot take the request now (still loading); retry later or elsewhere."""

    code = grpc.StatusCode.UNAVAILABLE


class ShuttingDownError(UnavailableError):
    """The server is draining for shutdown and takes no new work; retry on another replica."""
