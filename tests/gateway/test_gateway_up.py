"""``ferryman up``: scorer + gateway as child processes, routed end to end, clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import yaml
from gw_harness import ENV, config_dict, free_port

from ferryman.gateway.v1 import gateway_pb2 as pb
from ferryman.gateway.v1 import gateway_pb2_grpc

REPO = Path(__file__).resolve().parents[2]


def test_up_routes_through_the_scorer_and_stops_cleanly(fakes, tmp_path, tmp_path_factory):
    from scorer.testing import build_test_routers

    routers = build_test_routers(tmp_path_factory.mktemp("up-routers"))
    http_port, grpc_port, scorer_port = free_port(), free_port(), free_port()
    data = config_dict(fakes)
    data["auth"] = {"disabled": False, "keys_env": "UP_TEST_KEYS"}
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump(data))
    env = os.environ | ENV | {"FERRYMAN_SCORER_METRICS_PORT": "0", "UP_TEST_KEYS": ""}
    cmd = [sys.executable, "-m", "ferryman", "up", "--config", str(config), "--routers-dir", str(routers)]
    cmd += ["--scorer-port", str(scorer_port), "--grpc-port", str(grpc_port), "--http-port", str(http_port)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # no key configured: up generates one and prints it
        assert "generated one for this run" in line
        key = line.rsplit(": ", 1)[1].strip()
        metadata = (("authorization", f"Bearer {key}"),)
        request = pb.RouteRequest(model="router-mf-0.5", messages=[pb.ChatMessage(role="user", content="hi")])
        deadline = time.monotonic() + 120
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            while True:  # the scorer loads its routers in the background; wait until routing is scored
                try:
                    decision = stub.Route(request, metadata=metadata, timeout=5).decision
                    if decision.source == pb.DECISION_SOURCE_SCORED:
                        break
                except grpc.RpcError:
                    pass
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.3)
        assert httpx.get(f"http://127.0.0.1:{http_port}/readyz").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    for port in (http_port, grpc_port, scorer_port):  # both children are gone
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0
