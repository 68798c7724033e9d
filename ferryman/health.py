"""``ferryman health``: ask a server's ``grpc.health.v1`` service for its status; exit 0 when SERVING.

The images' ``HEALTHCHECK`` runs it against the service in the same container (Kubernetes uses its
native ``grpc:`` probes on the same port instead), and it answers a person without grpcurl::

    ferryman health 127.0.0.1:50051                  # SERVING, exit 0
    ferryman health 127.0.0.1:50061 --service ferryman.gateway.v1.GatewayService

Exit codes: 0 SERVING; 1 any other status (NOT_SERVING while loading or draining), no answer within
``--timeout``, or the service unknown to the server.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def status(target: str, service: str = "", timeout_s: float = 1.0) -> str:
    """The status name (``SERVING``, ``NOT_SERVING``, ...) or the gRPC error code's name."""
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            return code.name if code is not None else "UNAVAILABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="HOST:PORT of the gRPC server, e.g. 127.0.0.1:50051")
    parser.add_argument("--service", default="", help="service name to ask about ('' = the whole server)")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the answer")


def run(args: argparse.Namespace) -> int:
    name = status(args.target, args.service, args.timeout)
    print(f"{args.target}: {name}", file=sys.stdout if name == "SERVING" else sys.stderr)
    return 0 if name == "SERVING" else 1
