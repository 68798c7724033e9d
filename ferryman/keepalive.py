"""gRPC keepalive between Ferryman's services: the pings a server accepts from its clients.

The gateway's channel to the scorer pings every ``scorer.keepalive_time_ms`` (30 s), also while no
call is under way, so that a scorer that vanished without closing its connections (a node lost) is
noticed before the next request waits on it. A gRPC server's defaults refuse that: a ping on a
connection with no call is allowed every 2 hours, with calls every 5 minutes; the third ping sooner
closes the connection with GOAWAY ``too_many_pings`` (an ERROR line in the client's log, a reconnect,
and calls caught by it fail UNAVAILABLE). Both servers accept the pings of any client that waits at
least :data:`MIN_PING_INTERVAL_MS` between them, with or without calls; faster pings are still
refused, as keepalive abuse.
"""

from __future__ import annotations

#: The shortest interval between a client's pings that the scorer and the gateway servers accept.
MIN_PING_INTERVAL_MS = 10_000


def server_options() -> list[tuple[str, int]]:
    """gRPC server arguments accepting pings every :data:`MIN_PING_INTERVAL_MS`, also on idle connections."""
    return [
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
    ]
