"""``ferryman scorer`` / ``ferryman score`` as real processes: SIGTERM drains, bad artifacts stop start-up, grpcurl."""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ferryman.scorer.v1 import scorer_pb2 as pb
from ferryman.scorer.v1 import scorer_pb2_grpc as pbg
from harness.scorer import DEFAULT_ENCODER_DIR, SAMPLE_PROMPTS, add_flipped_mf_version
from scorer import versions
from scorer.routers import ROUTER_KINDS

GRPCURL = Path(sys.executable).parent / "grpcurl"


def ferryman(*args: str) -> list[str]:
    return [sys.executable, "-m", "ferryman", *args]


def scorer_cmd(routers_dir: Path, *extra: str) -> list[str]:
    return ferryman(
        "scorer",
        "--routers-dir",
        str(routers_dir),
        "--encoder-dir",
        str(DEFAULT_ENCODER_DIR),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--metrics-port",
        "0",
        *extra,
    )


_PENDING: dict[int, str] = {}  # per stdout descriptor: text read past the last line returned


def wait_for_line(proc: subprocess.Popen[str], pattern: str, timeout: float = 60) -> re.Match[str]:
    """Read the process's stdout until a line matches ``pattern``.

    Reads the descriptor itself: a text wrapper's ``readline`` pulls whatever is available into
    its own buffer, where ``select`` cannot see it, so a second line that arrived with the first
    was never found.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = _PENDING.pop(fd, "")
    end = time.monotonic() + timeout
    seen = []
    while True:
        while "\n" in buf:
            line, buf = buf.split("\n", 1)
            seen.append(line)
            if m := re.search(pattern, line):
                _PENDING[fd] = buf
                return m
        if time.monotonic() >= end:
            break
        if not select.select([fd], [], [], 0.5)[0]:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:  # the process closed its output
            break
        buf += chunk.decode("utf-8", errors="replace")
    raise AssertionError(f"no line matching {pattern!r}; got {seen}")


@pytest.fixture
def served(test_routers_dir: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen(
        scorer_cmd(test_routers_dir, "--workers", "1", "--grace-s", "60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        port = wait_for_line(proc, r"listening on 127\.0\.0\.1:(\d+)").group(1)
        wait_for_line(proc, "serving routers " + ", ".join(sorted(ROUTER_KINDS)))
        yield proc, f"127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def test_sigterm_during_load_completes_in_flight_calls(served: tuple[subprocess.Popen[str], str]) -> None:
    proc, address = served
    # Distinct, longish prompts (the batcher embeds each distinct text once per batch).
    batches = [
        pb.BatchScoreRequest(
            requests=[pb.ScoreRequest(router="mf", prompt=f"{p} (case {i}) " * 6) for p in SAMPLE_PROMPTS[:16]]
        )
        for i in range(12)
    ]

    async def main() -> list[pb.BatchScoreResponse]:
        async with grpc.aio.insecure_channel(address) as channel:
            await channel.channel_ready()
            stub = pbg.ScorerServiceStub(channel)
            calls = [asyncio.ensure_future(stub.BatchScore(b, timeout=120)) for b in batches]
            await asyncio.sleep(0.3)
            assert not all(c.done() for c in calls), "load finished before SIGTERM; make it heavier"
            proc.send_signal(signal.SIGTERM)
            return await asyncio.gather(*calls)

    responses = asyncio.run(main())
    assert len(responses) == 12 and all(len(r.responses) == 16 for r in responses)
    assert proc.wait(60) == 0
    assert proc.stdout is not None and "stopped" in proc.stdout.read()


def test_sigterm_while_loading_stops_cleanly(test_routers_dir: Path) -> None:
    """SIGTERM before SERVING (ferryman.signals): a clean stop with status 0, also as a container's PID 1
    (where an unhandled SIGTERM would be ignored); without the handler the default action gave -15."""
    proc = subprocess.Popen(scorer_cmd(test_routers_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_line(proc, r"listening on .*\(loading routers\)")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert proc.stdout is not None and "ferryman.scorer: stopped (before serving)" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


#: ferryman.logs' format, the gateway's too: time, level, logger, message.
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: .+")


def test_every_line_from_start_to_stop_is_a_timestamped_log_line(test_routers_dir: Path, tmp_path: Path) -> None:
    """Was: 'listening', 'serving routers' and 'stopped' printed on stdout with no time or level, beside the
    timestamped log lines on stderr; now the scorer writes only log lines, in the gateway's format."""
    log = tmp_path / "scorer.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            scorer_cmd(test_routers_dir, "--workers", "1"), stdout=subprocess.PIPE, stderr=err, text=True
        )
    try:
        deadline = time.monotonic() + 180
        while "serving routers" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == 0
    assert out == ""
    lines = log.read_text().splitlines()
    assert [line for line in lines if not LOG_LINE.fullmatch(line)] == []
    assert "INFO ferryman.scorer: listening on 127.0.0.1:" in lines[0]
    assert any("INFO ferryman.scorer: serving routers " in line for line in lines)
    assert lines[-1].endswith("INFO ferryman.scorer: stopped")


def test_health_command_exit_codes(served: tuple[subprocess.Popen[str], str]) -> None:
    """`ferryman health` (the images' HEALTHCHECK): 0 when SERVING, 1 for an unknown service or no server."""
    _, address = served
    ok = subprocess.run(ferryman("health", address), capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.strip() == f"{address}: SERVING"
    unknown = subprocess.run(
        ferryman("health", address, "--service", "nope"), capture_output=True, text=True, timeout=60
    )
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    down = subprocess.run(ferryman("health", closed, "--timeout", "1"), capture_output=True, text=True, timeout=60)
    assert down.returncode == 1 and "UNAVAILABLE" in down.stderr


def test_grpcurl_lists_services_and_health(served: tuple[subprocess.Popen[str], str]) -> None:
    _, address = served
    listed = subprocess.run([str(GRPCURL), "-plaintext", address, "list"], capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    services = set(listed.stdout.split())
    assert {"ferryman.scorer.v1.ScorerService", "grpc.health.v1.Health"} <= services
    assert "grpc.reflection.v1alpha.ServerReflection" in services or "grpc.reflection.v1.ServerReflection" in services
    check = subprocess.run(
        [str(GRPCURL), "-plaintext", address, "grpc.health.v1.Health/Check"], capture_output=True, text=True, timeout=30
    )
    assert '"status": "SERVING"' in check.stdout
    score = subprocess.run(
        [
            str(GRPCURL),
            "-plaintext",
            "-d",
            '{"router": "mf", "prompt": "hi"}',
            address,
            "ferryman.scorer.v1.ScorerService/Score",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert json.loads(score.stdout)["router"] == "mf"


@pytest.mark.parametrize(
    ("break_it", "expected"),
    [
        (lambda r: (r / "sw" / "embeddings.npy").write_bytes(b"\x93NUMPY garbage"), r"sw/embeddings\.npy"),
        (lambda r: (r / "mf" / "weights.npz").unlink(), r"mf/weights\.npz: file for role 'weights' is missing"),
        (lambda r: (r / "bert" / "manifest.json").write_text('{"format_version": 1}'), r"bert/manifest\.json: missing"),
        (lambda r: shutil.rmtree(r), r"routers directory not found"),
        (lambda r: [shutil.rmtree(p) for p in list(r.iterdir())], r"no router artifacts"),
    ],
)
def test_bad_artifacts_stop_startup_naming_the_file(
    test_routers_dir: Path, tmp_path: Path, break_it: object, expected: str
) -> None:
    routers = tmp_path / "routers"
    shutil.copytree(test_routers_dir, routers)
    break_it(routers)  # type: ignore[operator]
    done = subprocess.run(scorer_cmd(routers), capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert re.search(expected, done.stderr), done.stderr
    assert "Traceback" not in done.stderr


def test_default_routers_dir_missing_fails_clearly(tmp_path: Path) -> None:
    done = subprocess.run(
        ferryman("scorer", "--port", "0", "--metrics-port", "0", "--host", "127.0.0.1"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "routers: routers directory not found" in done.stderr


@pytest.mark.parametrize("which", ["--port", "--metrics-port"])
def test_port_in_use_is_a_clean_startup_error(test_routers_dir: Path, which: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        args = scorer_cmd(test_routers_dir)
        args[args.index(which) + 1] = port
        done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert f"127.0.0.1:{port}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_a_port_past_65535_is_refused_not_wrapped(test_routers_dir: Path) -> None:
    """Was: --port 150050 served on 18978 (gRPC binds the port modulo 65536) and said so only in passing."""
    for which, value, env in (("--port", "150050", {}), ("--metrics-port", "-1", {}), (None, None, {"PORT": "70000"})):
        args = scorer_cmd(test_routers_dir)
        if which is not None:
            args[args.index(which) + 1] = str(value)
        else:
            args = [a for i, a in enumerate(args) if a != "--port" and args[i - 1] != "--port"]
        environ = os.environ | {f"FERRYMAN_SCORER_{k}": v for k, v in env.items()}
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, env=environ)
        bad = value or env["PORT"]
        assert done.returncode == 2, done.stdout + done.stderr
        assert "is not a port number (0 to 65535)" in done.stderr and bad in done.stderr, done.stderr
        assert "listening" not in done.stdout and "Traceback" not in done.stderr


def test_second_scorer_on_a_used_port_exits_with_a_clear_error(
    served: tuple[subprocess.Popen[str], str], test_routers_dir: Path
) -> None:
    """gRPC's default SO_REUSEPORT let a second scorer bind the same port and serve half the calls; not any more."""
    proc, address = served
    port = address.rsplit(":", 1)[1]
    args = scorer_cmd(test_routers_dir)
    args[args.index("--port") + 1] = port
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"cannot bind gRPC port 127.0.0.1:{port}: address in use" in done.stderr
    assert "serving" not in done.stdout and "Traceback" not in done.stderr
    assert proc.poll() is None  # the first one still serves
    with grpc.insecure_channel(address) as channel:
        reply = pbg.ScorerServiceStub(channel).Score(pb.ScoreRequest(router="mf", prompt="hi"), timeout=30)
    assert reply.router == "mf"


def test_score_command_prints_json(test_routers_dir: Path) -> None:
    done = subprocess.run(
        ferryman(
            "score",
            "--routers-dir",
            str(test_routers_dir),
            "--router",
            "sw",
            "--weak",
            "claude-2.1",
            "What is 2+2?",
            "Prove the Riemann hypothesis",
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["prompt"] for r in rows] == ["What is 2+2?", "Prove the Riemann hypothesis"]
    assert all(0 <= r["strong_win_rate"] <= 1 and r["weak_model"] == "claude-2.1" for r in rows)
    bad = subprocess.run(
        ferryman("score", "--routers-dir", str(test_routers_dir), "--router", "mf", "--strong", "gpt-9", "hi"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "known models" in bad.stderr


def test_sighup_reloads_a_scorer_that_does_not_poll(test_routers_dir: Path, tmp_path: Path) -> None:
    """With polling off, a promoted version serves after SIGHUP (and not before)."""
    routers = tmp_path / "routers"
    routers.mkdir()
    shutil.copytree(test_routers_dir / "mf", routers / "mf")
    mf = routers / "mf"
    v1 = add_flipped_mf_version(mf)
    proc = subprocess.Popen(
        scorer_cmd(routers, "--reload-interval-s", "0"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        port = wait_for_line(proc, r"serving routers .* on 127\.0\.0\.1:(\d+)", timeout=180).group(1)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pbg.ScorerServiceStub(ch)
            ask = pb.ScoreRequest(router="mf", prompt=SAMPLE_PROMPTS[0])
            before = stub.Score(ask, timeout=10)
            versions.set_current(mf, v1, action="promote")
            assert stub.Score(ask, timeout=10).artifact_version == before.artifact_version  # not polling
            proc.send_signal(signal.SIGHUP)
            wait_for_line(proc, rf"router mf: now serving {v1}@", timeout=120)
            after = stub.Score(ask, timeout=10)
        assert after.artifact_version.startswith(f"{v1}@") and before.artifact_version.startswith("base@")
        assert after.strong_win_rate == pytest.approx(1 - before.strong_win_rate, abs=1e-9)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
