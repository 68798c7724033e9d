"""``ferryman up``: scorer + gateway as child processes, routed end to end, clean stop on SIGTERM."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pydantic
import pytest
import yaml

from ferryman.gateway.v1 import gateway_pb2 as pb
from ferryman.gateway.v1 import gateway_pb2_grpc
from harness.gateway import ENV, config_dict
from harness.processes import free_port

REPO = Path(__file__).resolve().parents[2]


def _up_command(fakes, tmp_path, tmp_path_factory) -> tuple[list[str], dict[str, str], tuple[int, int, int, int]]:
    """``ferryman up`` over test routers and the fake providers, its environment and (http, grpc, scorer, admin)
    ports."""
    from harness.scorer import build_test_routers

    routers = build_test_routers(tmp_path_factory.mktemp("up-routers"))
    http_port, grpc_port, scorer_port, admin_port = free_port(), free_port(), free_port(), free_port()
    data = config_dict(fakes)
    data["auth"] = {"disabled": False, "keys_env": "UP_TEST_KEYS"}
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump(data))
    # TMPDIR: the working directory of an `up` that a test SIGKILLs stays behind, in the test's tmp_path
    env = os.environ | ENV | {"FERRYMAN_SCORER_METRICS_PORT": "0", "UP_TEST_KEYS": "", "TMPDIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "ferryman", "up", "--config", str(config), "--routers-dir", str(routers)]
    cmd += ["--scorer-port", str(scorer_port), "--grpc-port", str(grpc_port), "--http-port", str(http_port)]
    cmd += ["--admin-port", str(admin_port)]
    return cmd, env, (http_port, grpc_port, scorer_port, admin_port)


def _free_port_args() -> list[str]:
    """Flags that put every server of ``up`` on a free port (no scorer metrics port), so that nothing another
    copy listens on (its default ports, or default + an offset) decides the outcome."""
    args = ["--scorer-metrics-port", "0"]
    for flag in ("--scorer-port", "--grpc-port", "--http-port", "--admin-port"):
        args += [flag, str(free_port())]
    return args


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_until(predicate, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


def test_up_routes_through_the_scorer_and_stops_cleanly(fakes, tmp_path, tmp_path_factory):
    cmd, env, (http_port, grpc_port, scorer_port, admin_port) = _up_command(fakes, tmp_path, tmp_path_factory)
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
        assert httpx.get(f"http://127.0.0.1:{admin_port}/readyz").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    for port in (http_port, grpc_port, scorer_port, admin_port):  # both children are gone
        assert not _listening(port)


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for a reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone before or while its stat was read
        return False


def _kill_and_expect_stop(cmd: list[str], env: dict[str, str], ports: tuple[int, ...], victim: str, log) -> None:
    """Start ``up`` under a stand-in for make, SIGKILL ``victim`` (the stand-in or ``up``), expect everything gone."""
    keeper = "import subprocess, sys; p = subprocess.Popen(sys.argv[1:]); print(p.pid, flush=True); p.wait()"
    parent = subprocess.Popen(
        [sys.executable, "-c", keeper, *cmd], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True
    )
    assert parent.stdout is not None
    up_pid = int(parent.stdout.readline())
    children: list[int] = []
    try:
        _wait_until(lambda: all(_listening(p) for p in ports), "scorer and gateway listen")
        children += [int(c) for c in Path(f"/proc/{up_pid}/task/{up_pid}/children").read_text().split()]
        assert len(children) == 2
        os.kill(parent.pid if victim == "parent" else up_pid, signal.SIGKILL)
        _wait_until(lambda: not any(_alive(c) for c in children), f"the children stop after {victim} is killed", 60)
        if victim == "parent":
            _wait_until(lambda: not _alive(up_pid), "up exits after its parent is killed", 30)
        assert not any(_listening(p) for p in ports)
    finally:
        for pid in (*children, up_pid, parent.pid):  # nothing left behind, even when the test fails
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.wait(30)


def test_up_and_its_children_stop_when_their_parents_die(fakes, tmp_path, tmp_path_factory):
    """Nothing outlives its parent: killing ``up``'s parent stops ``up`` and both children (``timeout make
    run`` signals make only); killing ``up`` itself with SIGKILL still stops the children (PDEATHSIG)."""
    cmd, env, ports = _up_command(fakes, tmp_path, tmp_path_factory)
    with (tmp_path / "up.log").open("w") as log:
        for victim in ("parent", "up"):
            _kill_and_expect_stop(cmd, env, ports, victim, log)


def _read_until(proc: subprocess.Popen[str], text: str, timeout: float = 180) -> list[str]:
    """Lines of ``proc``'s output up to the first containing ``text``."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no {text!r} in output: {''.join(lines)}")


def test_up_says_where_it_listens_a_second_copy_on_used_ports_fails_and_one_on_other_ports_runs_beside(
    fakes, tmp_path, tmp_path_factory
):
    cmd, env, (http_port, grpc_port, scorer_port, admin_port) = _up_command(fakes, tmp_path, tmp_path_factory)
    first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    beside: subprocess.Popen[str] | None = None
    try:
        out = "".join(_read_until(first, "ferryman up: ready"))
        out += "".join(_read_until(first, "gateway admin"))
        assert f"scorer  gRPC 127.0.0.1:{scorer_port}" in out and f"gateway gRPC 127.0.0.1:{grpc_port}" in out
        assert f"gateway HTTP http://127.0.0.1:{http_port}" in out
        assert f"gateway admin http://127.0.0.1:{admin_port} (/metrics, /readyz)" in out
        # The same ports again: up names every used port and starts nothing; it never says "ready" (the first
        # copy's servers answer its readiness probe), nor starts children that would fail to bind.
        again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
        assert again.returncode == 2, again.stdout + again.stderr
        assert "ready" not in again.stdout and "starting" not in again.stdout, again.stdout
        assert f"ferryman up: cannot listen on 127.0.0.1: ports {scorer_port} (scorer gRPC: " in again.stderr
        for port in (grpc_port, http_port, admin_port):
            assert f"{port} (gateway " in again.stderr
        assert "--port-offset" in again.stderr and "Traceback" not in again.stderr
        # The scorer itself refuses a used port too (no SO_REUSEPORT), for a copy started another way.
        scorer = [sys.executable, "-m", "ferryman", "scorer", "--host", "127.0.0.1", "--port", str(scorer_port)]
        alone = subprocess.run([*scorer, "--metrics-port", "0"], cwd=REPO, env=env, capture_output=True, text=True)
        assert (
            alone.returncode == 2 and f"cannot bind gRPC port 127.0.0.1:{scorer_port}: address in use" in alone.stderr
        )
        # Other ports: runs beside the first, and both answer.
        other = [str(free_port()) for _ in range(4)]
        cmd2 = [*cmd]
        for flag, port in zip(("--scorer-port", "--grpc-port", "--http-port", "--admin-port"), other, strict=True):
            cmd2[cmd2.index(flag) + 1] = port
        beside = subprocess.Popen(cmd2, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _read_until(beside, "ferryman up: ready")
        for port in (admin_port, int(other[3])):
            assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    finally:
        for proc in (first, beside):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(60) == 0


def test_up_refuses_a_bad_config_with_its_message_and_starts_nothing(tmp_path):
    """A malformed, invalid or missing --config: exit 2 with the configuration's own message, no traceback."""
    bad_yaml, invalid = tmp_path / "bad.yaml", tmp_path / "invalid.yaml"
    bad_yaml.write_text("models:\n  a: [unclosed\n")
    invalid.write_text("models:\n  gpt: {provider: openai}\n")
    expected = {
        bad_yaml: f"ferryman up: configuration error: {bad_yaml}: not valid YAML",
        invalid: f"ferryman up: configuration error: {invalid}: models.gpt.base_url: required",
        tmp_path / "missing.yaml": f"cannot read config file {tmp_path / 'missing.yaml'}: No such file or directory",
    }
    no_keys = tmp_path / "no-keys.yaml"  # was a ConfigError traceback
    model = {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "price_in_per_mtok": 1, "price_out_per_mtok": 1}
    data = {"models": {"a": model, "b": model}, "tiers": {"strong": {"models": ["a"]}, "weak": {"models": ["b"]}}}
    no_keys.write_text(yaml.safe_dump(data | {"auth": {"keys_file": str(tmp_path / "keys")}}))
    expected[no_keys] = f"ferryman up: configuration error: auth.keys_file: {tmp_path / 'keys'} does not exist"
    for config, message in expected.items():
        # Free ports, not fixed ones (was --port-offset 17): with a port in use (another checkout's `make run`
        # or test), up stops at its port check ("cannot listen") before the config's own message.
        cmd = [sys.executable, "-m", "ferryman", "up", "--config", str(config), *_free_port_args()]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stdout + done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert "starting" not in done.stdout


def test_up_stops_on_a_policy_whose_router_cannot_route_the_tiers(fakes, tmp_path, tmp_path_factory):
    """Was: up started the gateway beside a scorer still loading, so the gateway could not check its policies'
    routers at start: 'ferryman up: ready', an ERROR line, and a 400 for every request of the policy. Now the
    gateway starts once the scorer serves, and exits with the configuration error, as `ferryman gateway` does."""
    from harness.tiers import three_tier_dict

    cmd, env, _ = _up_command(fakes, tmp_path, tmp_path_factory)
    config = tmp_path / "gateway.yaml"
    data = three_tier_dict(fakes, policies={"pairwise": {"router": "bert", "threshold": 0.5}})
    data["auth"] = {"disabled": True}
    config.write_text(yaml.safe_dump(data))
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "configuration error: router 'bert' (ROUTER_TYPE_BERT) knows only one model pair" in done.stderr
    assert "ferryman up: gateway exited with status 2; stopping scorer" in done.stdout
    assert "ferryman up: ready" not in done.stdout


def test_up_refuses_ports_past_65535_and_a_bad_number_in_its_environment(tmp_path):
    """Was: `make run PORT_OFFSET=99999` started the gateway on ports wrapped modulo 65536 before the scorer died
    with a traceback, and PORT_OFFSET=abc was a ValueError traceback."""
    up = [sys.executable, "-m", "ferryman", "up", "--config", "config/gateway.demo.yaml"]
    cases = [
        ([*up, "--port-offset", "99999"], {}, "ferryman up: not a port number (1 to 65535): scorer gRPC 150050, "),
        ([*up, "--demo", "--port-offset", "60000"], {}, "demo provider 68089"),
        ([*up, "--http-port", "70000"], {}, "argument --http-port: 70000 is not a port number (0 to 65535)"),
        ([*up, "--grpc-port", "0"], {}, "not a port number (1 to 65535): gateway gRPC 0"),  # up must dial it
        (up, {"FERRYMAN_UP_PORT_OFFSET": "abc"}, "ferryman up: FERRYMAN_UP_PORT_OFFSET='abc': expected a whole number"),
    ]
    for cmd, env, message in cases:
        done = subprocess.run(cmd, cwd=REPO, env=os.environ | env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stdout + done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert "starting" not in done.stdout


def test_up_ports_default_plus_offset_unless_given(tmp_path):
    from ferryman import up

    parser = argparse.ArgumentParser()
    up.add_arguments(parser)
    args = parser.parse_args(["--port-offset", "100", "--http-port", "9999", "--scorer-metrics-port", "0"])
    addr = up.addresses(args, config_grpc_port=50061, config_http_port=8080, config_admin_port=9091)
    assert (addr.host, addr.scorer_port, addr.scorer_metrics_port, addr.grpc_port, addr.http_port) == (
        "127.0.0.1",
        50151,
        0,
        50161,
        9999,
    )
    assert addr.admin_port == 9191
    assert up.addresses(parser.parse_args(["--host", "0.0.0.0"]), 50061, 8080).dial_host == "127.0.0.1"


class City(pydantic.BaseModel):
    city: str
    population: int = pydantic.Field(gt=0)
    tags: list[str]
    country: str = "unknown"


def _demo_up(tmp_path_factory) -> tuple[list[str], dict[str, str], dict[str, int]]:
    """``ferryman up --demo`` over the test routers on free ports, with no provider or client key set: the
    command, its environment and its ports by name."""
    from harness.scorer import build_test_routers

    routers = build_test_routers(tmp_path_factory.mktemp("demo-routers"))
    ports = {name: free_port() for name in ("scorer", "grpc", "http", "admin", "demo")}
    cmd = [sys.executable, "-m", "ferryman", "up", "--demo", "--routers-dir", str(routers)]
    for name, port in ports.items():
        cmd += [f"--{name}-port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "FERRYMAN_API_KEYS"}
    env["FERRYMAN_SCORER_METRICS_PORT"] = "0"
    return cmd, env, ports


def test_up_demo_serves_routed_completions_without_any_provider_key(tmp_path_factory):
    """``ferryman up --demo`` (``make demo``): no provider key and no client key set; the README's request
    gets a routed completion from the built-in demo provider, whole and streamed, labelled as a demo."""
    import anthropic
    import openai

    cmd, env, ports = _demo_up(tmp_path_factory)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out = "".join(_read_until(proc, "demo provider http"))
        assert "ferryman up: ready" in out and "client API key 'demo'" in out
        assert f"demo provider http://127.0.0.1:{ports['demo']}/v1" in out
        base = f"http://127.0.0.1:{ports['http']}"
        readme = {
            "model": "ferryman-balanced",
            "messages": [{"role": "user", "content": "Prove there are infinitely many primes."}],
        }
        deadline = time.monotonic() + 120
        while True:  # the scorer may still be loading: wait until the README's request is scored
            answer = httpx.post(
                base + "/v1/chat/completions", json=readme, headers={"authorization": "Bearer demo"}, timeout=30
            )
            assert answer.status_code == 200, answer.text
            if answer.headers["x-ferryman-decision-source"] == "scored":
                break
            assert time.monotonic() < deadline
            time.sleep(0.5)
        body = answer.json()
        assert body["model"] in ("demo-strong", "demo-weak") and body["model"] == answer.headers["x-ferryman-model"]
        assert body["choices"][0]["message"]["content"].startswith("[Ferryman demo]")
        assert body["ferryman"]["tier"] == {"demo-strong": "strong", "demo-weak": "weak"}[body["model"]]
        client = openai.OpenAI(base_url=base + "/v1", api_key="demo", max_retries=0)
        chunks = list(
            client.chat.completions.create(model="ferryman-balanced", messages=readme["messages"], stream=True)
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("[Ferryman demo]")
        assert {c.model for c in chunks} <= {"demo-strong", "demo-weak"} and len({c.model for c in chunks}) == 1
        message = anthropic.Anthropic(base_url=base, api_key="demo", max_retries=0).messages.create(
            model="ferryman-economy", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        )
        assert message.model.startswith("demo-") and message.content[0].text.startswith("[Ferryman demo]")
        # tool arguments and JSON answers fit the request's schemas, so the SDKs' parsers accept them
        claude = anthropic.Anthropic(base_url=base, api_key="demo", max_retries=0)
        for model in ("demo-strong", "demo-weak"):
            parsed = claude.messages.parse(model=model, max_tokens=100, messages=readme["messages"], output_format=City)
            assert parsed.parsed_output == City(city="demo", population=1, tags=["demo"])
            typed = client.chat.completions.parse(model=model, messages=readme["messages"], response_format=City)
            assert typed.choices[0].message.parsed == City(city="demo", population=1, tags=["demo"])
            loose = client.chat.completions.create(
                model=model, messages=readme["messages"], response_format={"type": "json_object"}
            )
            assert json.loads(loose.choices[0].message.content)["demo"].startswith("[Ferryman demo]")
            tool = {"type": "function", "function": {"name": "weather", "parameters": City.model_json_schema()}}
            called = client.chat.completions.create(model=model, messages=readme["messages"], tools=[tool])
            assert City.model_validate_json(called.choices[0].message.tool_calls[0].function.arguments)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    assert not any(_listening(p) for p in ports.values())


def test_up_demo_with_a_config_serves_that_config(tmp_path_factory):
    """``ferryman up --demo --config FILE``: the demo provider beside the operator's configuration (here the demo's
    with feedback on, as a new operator tries learning from traffic), its models that point at the demo's default
    port following --demo-port. Was: --config was silently replaced by config/gateway.demo.yaml, so learning was
    off and POST /v1/feedback answered 404 'feedback is not enabled'."""
    import openai

    cmd, env, ports = _demo_up(tmp_path_factory)
    work = tmp_path_factory.mktemp("demo-config")
    config = yaml.safe_load((REPO / "config/gateway.demo.yaml").read_text(encoding="utf-8"))
    config["learning"] = {
        "policies": ["ferryman-balanced"],
        "feedback": {"enabled": True},
        "store": {"url": f"sqlite://{work / 'learning.db'}"},
    }
    (work / "mine.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    proc = subprocess.Popen(
        [*cmd, "--config", str(work / "mine.yaml")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out = "".join(_read_until(proc, "demo provider http"))
        assert f"ferryman up: demo mode with --config {work / 'mine.yaml'}" in out
        assert "learning from traffic is ON" in out and str(work / "learning.db") in out
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{ports['http']}/v1", api_key="demo", max_retries=0)
        answer = client.chat.completions.create(
            model="ferryman-balanced", messages=[{"role": "user", "content": "Prove there are infinitely many primes."}]
        )
        assert answer.choices[0].message.content.startswith("[Ferryman demo]")  # the demo provider, on its port
        rated = client.post(
            "/feedback", cast_to=httpx.Response, body={"id": answer.id, "rating": "good"}, options={"timeout": 30}
        )
        assert rated.json() == {"object": "feedback", "id": answer.id, "rating": "good"}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    assert not any(_listening(p) for p in ports.values())


@pytest.mark.parametrize("ctrl_c", [False, True], ids=["SIGTERM to up", "Ctrl-C: SIGINT to its process group"])
def test_up_stops_the_gateway_first_so_that_its_drain_still_scores_and_answers(tmp_path_factory, ctrl_c):
    """SIGTERM to ``up --demo``, or Ctrl-C in its terminal, while a client keeps sending: the gateway drains (every
    request, old or new, is served), and it drains with the scorer and the demo provider still up. ``up`` used to
    signal all three at once, and a terminal's Ctrl-C reached all three itself, so requests during the drain were
    routed without a score and got 503 'cannot connect to provider' (seen killing the scorer under ``make demo``
    with traffic running: 34 of 621 requests; with Ctrl-C: 26 of 38)."""
    import threading

    cmd, env, ports = _demo_up(tmp_path_factory)
    # its own process group, as a terminal's foreground job is
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    url = f"http://127.0.0.1:{ports['http']}/v1/chat/completions"
    body = {
        "model": "ferryman-balanced",
        "messages": [{"role": "user", "content": "Prove there are infinitely many primes."}],
    }
    headers = {"authorization": "Bearer demo"}
    answers: list[tuple[int, str, str]] = []
    stop_sending = threading.Event()

    def send() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop_sending.is_set():
                reply = client.post(url, json=body, headers=headers)
                answers.append((reply.status_code, reply.headers.get("x-ferryman-decision-source", ""), reply.text))

    try:
        _read_until(proc, "demo provider http")
        _wait_until(
            lambda: (
                httpx.post(url, json=body, headers=headers, timeout=30).headers.get("x-ferryman-decision-source")
                == "scored"
            ),
            "the README's request is scored",
        )
        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(0.5)
        before = len(answers)
        if ctrl_c:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        time.sleep(1.5)  # the gateway drains while requests keep coming
        stop_sending.set()
        sender.join(60)
        assert proc.wait(60) == 0
    finally:
        stop_sending.set()
        if proc.poll() is None:
            proc.kill()
    during = answers[before:]
    assert during, "no request was sent during the drain"
    assert [a for a in during if a[:2] != (200, "scored")] == [], during[:3]
    assert not any(_listening(p) for p in ports.values())


def test_demo_provider_stops_quietly_on_ctrl_c_and_sigterm(tmp_path):
    """Ctrl-C on ``make demo`` reaches every process of the terminal's group: the demo provider printed a
    30-line KeyboardInterrupt traceback into the operator's terminal and exited with an error status."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        port_file = tmp_path / f"demo-{sig.name}.port"
        cmd = [sys.executable, "-m", "ferryman", "demo-provider", "--port", "0", "--port-file", str(port_file)]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_until(lambda f=port_file: f.exists() and f.read_text().strip() != "", "the demo provider serves")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "Traceback" not in err, (sig.name, proc.returncode, err)


def test_the_demo_provider_on_a_port_in_use_says_so_and_fails(tmp_path):
    """Was: uvicorn's one ERROR line, then exit 0, as if it served (a script starting it saw success)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cmd = [sys.executable, "-m", "ferryman", "demo-provider", "--port", str(port)]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert f"ferryman demo-provider: cannot listen on 127.0.0.1:{port} (--host/--port)" in done.stderr
    assert "Traceback" not in done.stderr
