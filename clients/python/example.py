"""Call a Ferryman gateway from Python with the generated stubs (``ferryman.gateway.v1``).

Calls ``Route`` (the routing decision only) and ``ChatCompletion`` (a routed completion) and
prints both decisions in the same line format as the Go and Node clients::

    python clients/python/example.py --addr 127.0.0.1:50061 --prompt "Prove that sqrt(2) is irrational."

The stubs are committed under ``ferryman/`` (``make proto``); install the project
(``pip install -e .``) or run from the repository root. The client key, if the gateway requires
one, comes from ``--api-key`` or ``FERRYMAN_API_KEY``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import grpc

try:
    from ferryman.gateway.v1 import gateway_pb2, gateway_pb2_grpc
except ImportError:  # running from a checkout without installing: the repo root holds ferryman/
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from ferryman.gateway.v1 import gateway_pb2, gateway_pb2_grpc


def format_decision(d: gateway_pb2.RoutingDecision) -> str:
    """The decision as key=value pairs (enum values by name); ``scores`` lists every score used as
    ``tier:score/threshold``, cheapest tier first."""
    scores = ",".join(f"{t.tier}:{t.score:.6f}/{t.threshold:.6f}" for t in d.tier_scores)
    return (
        f"tier={gateway_pb2.Tier.Name(d.tier)} model={d.model} router={d.router} score={d.score:.6f} "
        f"threshold={d.threshold:.6f} source={gateway_pb2.DecisionSource.Name(d.source)} policy={d.policy} "
        f"tier_name={d.tier_name} scores={scores}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addr", default="127.0.0.1:50061", help="gateway gRPC address (host:port)")
    parser.add_argument("--model", default="ferryman-balanced", help="routed model, named policy or plain model")
    parser.add_argument("--prompt", default="Explain the difference between a mutex and a semaphore.")
    parser.add_argument("--api-key", default="", help="client key (default: $FERRYMAN_API_KEY)")
    parser.add_argument("--no-chat", action="store_true", help="skip ChatCompletion (no provider needed)")
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline of each call in seconds")
    args = parser.parse_args(argv)

    api_key = args.api_key or os.environ.get("FERRYMAN_API_KEY", "")
    metadata = [("authorization", f"Bearer {api_key}")] if api_key else []
    messages = [gateway_pb2.ChatMessage(role="user", content=args.prompt)]
    with grpc.insecure_channel(args.addr) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        try:
            route = stub.Route(
                gateway_pb2.RouteRequest(model=args.model, messages=messages), timeout=args.timeout, metadata=metadata
            )
            print(f"route {format_decision(route.decision)}", flush=True)
            if not args.no_chat:
                resp = stub.ChatCompletion(
                    gateway_pb2.ChatCompletionRequest(model=args.model, messages=messages),
                    timeout=args.timeout,
                    metadata=metadata,
                )
                acc = resp.accounting
                print(
                    f"chat {format_decision(resp.decision)} served_model={acc.served_model} "
                    f"degraded={str(acc.degraded).lower()} cost_usd={acc.cost_usd:.6f} "
                    f"reply={json.dumps(resp.message.content)}",
                    flush=True,
                )
        except grpc.RpcError as exc:
            print(f"ferryman-client: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
