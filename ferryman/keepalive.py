"""gRPC connections between Ferryman's services: the keepalive pings a server accepts from its clients, and
when a server closes a connection so that its clients resolve the Service again.

The gateway's channel to the scorer pings every ``scorer.keepalive_time_ms`` (30 s), also while no
call is under way, so that a scorer that vanished without closing its connections (a node lost) is
noticed before the next request waits on it. A gRPC server's defaults refuse that: a ping on a
connection with no call is allowed every 2 hours, with calls every 5 minutes; the third ping sooner
closes the connection with GOAWAY ``too_many_pings`` (an ERROR line in the client's log, a reconnect,
and calls caught by it fail UNAVAILABLE). Both servers accept the pings of any client that waits at
least :data:`MIN_PING_INTERVAL_MS` between them, with or without calls; faster pings are still
refused, as keepalive abuse.

A client resolves a ``dns:///`` name (a headless Service: one address per replica) only when a connection
ends, and a Service spreads connections, not calls: without an end, replicas added since a client
connected get none of its calls. :func:`max_age_options` closes each connection after a while (GOAWAY).
"""

from __future__ import annotations

#: The shortest interval between a client's pings that the scorer and the gateway servers accept.
MIN_PING_INTERVAL_MS = 10_000
#: The longest time a gRPC channel or server argument can carry (a C int of milliseconds, about 24.8 days): a
#: larger one fails the server's or channel's creation with OverflowError.
MAX_ARG_MS = 2**31 - 1


def server_options() -> list[tuple[str, int]]:
    """gRPC server arguments accepting pings every :data:`MIN_PING_INTERVAL_MS`, also on idle connections."""
    return [
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
    ]


def max_age_options(age_s: float, grace_s: float | None = None) -> list[tuple[str, int]]:
    """gRPC server arguments closing each client connection after ``age_s`` (0: never). The calls under way
    get ``grace_s`` to finish, or (None) as long as they take."""
    if age_s <= 0:
        return []
    options = [("grpc.max_connection_age_ms", round(age_s * 1000))]
    if grace_s is not None:
        options.append(("grpc.max_connection_age_grace_ms", round(grace_s * 1000)))
    return options
