"""Configuration validation: the shipped files load; bad files fail at start naming the field."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.config import load_config, parse_config
from gateway.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def base() -> dict:
    return {
        "models": {
            "big": {
                "provider": "openai",
                "base_url": "http://127.0.0.1:9/v1",
                "api_key_env": "K",
                "price_in_per_mtok": 1,
                "price_out_per_mtok": 2,
            },
            "small": {
                "provider": "anthropic",
                "base_url": "http://127.0.0.1:9/v1",
                "api_key_env": "K",
                "price_in_per_mtok": 0.1,
                "price_out_per_mtok": 0.2,
            },
        },
        "tiers": {"strong": {"models": ["big"]}, "weak": {"models": ["small"]}},
        "policies": {"p": {"router": "mf", "strong_share": 0.3}},
    }


@pytest.mark.parametrize("name", ["gateway.yaml", "gateway.dev.yaml"])
def test_shipped_configs_load(name):
    config = load_config(REPO / "config" / name)
    assert config.policies["ferryman-balanced"].strong_share == 0.3
    assert config.auth.disabled == (name == "gateway.dev.yaml")
    if config.auth.disabled:  # was 0.0.0.0: an unauthenticated gateway on every interface
        assert {config.server.grpc_host, config.server.http_host, config.admin.host} == {"127.0.0.1"}


def _mutate(data: dict, path: str, value: object) -> dict:
    *parents, leaf = path.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
    if value is _DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return data


_DELETE = object()

BAD = [
    ("models.big.provider", "azure", "models.big.provider: must be 'openai' or 'anthropic'"),
    ("models.big.base_url", "ftp://x", "models.big.base_url: must start with http"),
    ("models.big.price_in_per_mtok", _DELETE, "models.big.price_in_per_mtok: required"),
    ("models.big.price_out_per_mtok", -1, "models.big.price_out_per_mtok: must be >= 0"),
    ("models.big.read_timeout_s", "fast", "models.big.read_timeout_s: expected float"),
    ("models.big.colour", "red", "models.big: unknown field(s) colour"),
    ("tiers.strong.models", ["nope"], "tiers.strong.models: 'nope' is not defined under models"),
    ("tiers.weak.models", ["big"], "model(s) big are in both tiers"),
    ("tiers.weak", _DELETE, "tiers.weak.models: a non-empty list"),
    ("policies.p.strong_share", 1.5, "policies.p.strong_share: must be in [0, 1]"),
    ("policies.p.threshold", 0.2, "policies.p: set exactly one of threshold or strong_share"),
    ("policies.p.scorer_down_tier", "medium", "policies.p.scorer_down_tier: must be 'strong' or 'weak'"),
    ("policies.router-x-1", {"threshold": 0.1}, "name clashes"),
    ("scorer.deadline_ms", 0, "scorer.deadline_ms: must be > 0"),
    ("scorer.keepalive_time_ms", 1000, "scorer.keepalive_time_ms: must be >= 10000 (the scorer refuses pings"),
    ("auth.disabled", "yes", "auth.disabled: expected bool"),
    ("retry.max_retries", -1, "retry.max_retries: must be >= 0"),
    ("models.big.max_tokens_cap", 0, "models.big.max_tokens_cap: must be > 0"),
    ("models.big.pool_timeout_s", 0, "models.big.pool_timeout_s: must be > 0"),
    ("breaker.failure_rate", 1.5, "breaker.failure_rate: must be in [0, 1]"),
    ("breaker.failure_rate", 0, "breaker.failure_rate: must be > 0"),
    ("breaker.min_requests", 0, "breaker.min_requests: must be > 0"),
    # fields that moved or went away name their replacement instead of "unknown field"
    ("breaker.fail_max", 5, "breaker.fail_max: no longer supported; breakers open on a failure rate"),
    ("server.max_body_bytes", 1024, "server.max_body_bytes: no longer supported; it is limits.max_body_bytes"),
    ("limits.max_header_bytes", 0, "limits.max_header_bytes: must be > 0"),
    ("limits.header_timeout", 5, "limits: unknown field(s) header_timeout"),
    ("admin.port", -1, "admin.port: must be >= 0"),
    ("admin.port", 65536, "admin.port: must be a port number (0 to 65535), got 65536"),
    ("server.http_port", 150050, "server.http_port: must be a port number (0 to 65535), got 150050"),
    # a target gRPC would take and then fail every call with (was: accepted, the scorer 'never answering')
    ("scorer.target", "127.0.0.1:150051", "scorer.target: '127.0.0.1:150051': port '150051' is not a port number"),
    ("scorer.target", "http://scorer:50051", "scorer.target: 'http://scorer:50051' is a URL; a gRPC target is"),
    # a mistyped field is named, not the check it makes fail (was: 'set exactly one of ...', 'required')
    ("policies.p", {"router": "mf", "strong_shar": 0.3}, "policies.p: unknown field(s) strong_shar"),
    (
        "policies.p",
        {"cost_share": 0.5, "operating_points": [{"cost": 0.1, "tier": "weak"}, {"cost": 1, "tir": "strong"}]},
        "policies.p.operating_points[1]: unknown field(s) tir",
    ),
    (
        "llm_routers.r",
        {"model": "small", "fallback_routr": "mf"},
        "llm_routers.r.fallback_router: required (unknown field(s) here: fallback_routr)",
    ),
    # a request that ends before a slow scorer's deadline plus one connect attempt can never fall back (was
    # accepted: 0.001 failed every request); the field is named with the sum it must exceed
    (
        "server.request_timeout_s",
        0.001,
        "server.request_timeout_s: must be greater than scorer.deadline_ms (250 ms) + the longest connect timeout "
        "(models.big.connect_timeout_s: 5 s) = 5.25 s",
    ),
    ("models.small.connect_timeout_s", 400, "(models.small.connect_timeout_s: 400 s) = 400.25 s, or a slow scorer"),
    # durations that become gRPC arguments, C ints of ms (was accepted; the server failed with OverflowError)
    ("server.request_timeout_s", 3e6, "server.request_timeout_s: must be at most 2147483 (gRPC carries it as a C int"),
    ("server.grpc_max_connection_age_s", 3e6, "server.grpc_max_connection_age_s: must be at most 2147483"),
    ("scorer.keepalive_timeout_ms", 2**31, "scorer.keepalive_timeout_ms: must be at most 2147483647"),
    # checked when the file is read, naming the field (was: at start, 'learning store URL: ...')
    (
        "learning",
        {"policies": ["p"], "feedback": {"enabled": True}, "store": {"url": "mysql://db/x"}},
        "learning.store.url: unknown scheme 'mysql'",
    ),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_config_names_the_field(path, value, message):
    with pytest.raises(ConfigError, match=None) as info:
        parse_config(_mutate(base(), path, value))
    assert message in str(info.value)


def test_a_yaml_syntax_error_is_one_line_with_its_place(tmp_path):
    """Was: PyYAML's four-line message, quoting '<unicode string>' instead of the file."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  grpc_port: 50061:\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value) == f"{bad}: not valid YAML: mapping values are not allowed here (line 2, column 19)"
    bad.write_text("server: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert "\n" not in str(info.value) and "(line 2, column 1)" in str(info.value)


def test_a_key_given_twice_is_refused_with_both_places(tmp_path):
    """Was: PyYAML keeps the last of two equal keys, so a second ``policies:`` appended to the shipped file
    started a gateway without ferryman-balanced and the rest (clients got 404 model_not_found)."""
    shipped = (REPO / "config" / "gateway.yaml").read_text()
    first = 1 + shipped.splitlines().index("policies:")
    bad = tmp_path / "gateway.yaml"
    bad.write_text(shipped + "\npolicies:\n  ferryman-chat: {router: mf, strong_share: 0.3}\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    line = len(shipped.splitlines()) + 2
    assert str(info.value) == (
        f"{bad}: not valid YAML: duplicate key 'policies' (line {line}, column 1; first at line {first}): "
        "the later one would replace the earlier"
    )
    bad.write_text("models:\n  m: {provider: openai, provider: anthropic}\n")  # nested, in flow style too
    with pytest.raises(ConfigError, match=r"duplicate key 'provider' \(line 2, column 25; first at line 2\)"):
        load_config(bad)


def test_yaml_merge_keys_still_load_and_keys_beside_them_override(tmp_path):
    """A `<<: *anchor` merge (one model's settings shared by the next) with a key overriding the anchor's is YAML,
    not a duplicate. Was, once duplicate keys were refused: "could not determine a constructor for the tag
    ...merge"."""
    config = yaml.safe_load((REPO / "config" / "gateway.yaml").read_text())
    first, second = list(config["models"])[:2]
    config["models"][first] |= {"read_timeout_s": 42.0, "max_tokens_cap": 100}
    config["models"][second] = {"merge": "here", **config["models"][second], "max_tokens_cap": 7}
    config["models"][second].pop("read_timeout_s", None)  # not given: the anchor's
    text = yaml.safe_dump(config, sort_keys=False)
    text = text.replace(f"  {first}:\n", f"  {first}: &shared\n", 1).replace("merge: here", "<<: *shared", 1)
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    models = load_config(path).models
    assert models[second].read_timeout_s == 42.0 and models[second].max_tokens_cap == 7
    assert models[first].max_tokens_cap == 100 and models[second].provider != models[first].provider


def test_client_keys_file_comments_and_entries_with_whitespace(tmp_path):
    """Was: every line was a key, so '# prod keys' became a client key and a file of comments alone started
    a gateway that only that 'key' could use."""
    from gateway.config import AuthConfig

    keys = tmp_path / "keys"
    keys.write_text("# prod keys\nk1\n  k2 , k3\n\n")
    auth = AuthConfig(keys_env="KEYS", keys_file=keys)
    assert auth.load_keys({"KEYS": "k4,"}) == {"k1", "k2", "k3", "k4"}
    keys.write_text("# no keys yet\n")
    assert auth.load_keys({}) == frozenset()  # and so the gateway refuses to start: no client API keys
    for text, env in (("k1 old key\n", {}), ("k1\n", {"KEYS": "k2 k3"})):
        keys.write_text(text)
        with pytest.raises(ConfigError, match="an entry contains whitespace") as info:
            auth.load_keys(env)
        assert "k1" not in str(info.value) and "k2" not in str(info.value)


def test_a_learning_store_named_only_by_url_env_needs_the_variable(tmp_path):
    """Was: learning.store.url_env naming an unset variable fell back to the default sqlite://ferryman-learning.db
    in the working directory, silently: prompts stored in a local file instead of the shared Redis."""
    learning = {"policies": ["p"], "feedback": {"enabled": True}, "store": {"url_env": "LEARN_URL"}}
    store = parse_config(base() | {"learning": learning}).learning.store
    assert store.resolve_url({"LEARN_URL": "redis://127.0.0.1:6379/0"}) == "redis://127.0.0.1:6379/0"
    with pytest.raises(ConfigError, match=r"learning.store.url_env: \$LEARN_URL is not set, and there is no"):
        store.resolve_url({})
    with pytest.raises(ConfigError, match=r"learning.store.url_env: \$LEARN_URL: unknown scheme 'mysql'"):
        store.resolve_url({"LEARN_URL": "mysql://db"})
    learning["store"] = {"url_env": "LEARN_URL", "url": "sqlite:///tmp/x.db"}  # an explicit fallback stays one
    assert parse_config(base() | {"learning": learning}).learning.store.resolve_url({}) == "sqlite:///tmp/x.db"
    # at start, one line
    learning["store"] = {"url_env": "LEARN_URL"}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(base() | {"learning": learning}))
    env = {"PATH": "/usr/bin:/bin", "FERRYMAN_API_KEYS": "k"}
    argv = [sys.executable, "-m", "ferryman", "gateway", "--config", str(path), "--http-port", "0", "--grpc-port", "0"]
    argv += ["--admin-port", "0"]
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "configuration error: learning.store.url_env: $LEARN_URL is not set" in proc.stderr
    assert not (tmp_path / "ferryman-learning.db").exists()


def test_an_opt_out_entry_that_is_not_a_tenant_id_stops_start_up(tmp_path):
    """Was: learning.shadow.opt_out_tenants took any string, so a client key listed there (instead of its tenant
    id) opted nobody out: that client's prompts and answers were stored. Now start-up stops, without repeating the
    entry (it may be a key)."""
    from gateway.learning.tenants import tenant_id

    secret = "sk-client-secret-1"
    learning = {"policies": ["p"], "feedback": {"enabled": True}, "store": {"url": f"sqlite://{tmp_path / 'l.db'}"}}
    learning["shadow"] = {"opt_out_tenants": [tenant_id(secret), "anonymous"]}
    assert parse_config(base() | {"learning": learning}).learning.shadow.opt_out_tenants == {
        tenant_id(secret),
        "anonymous",
    }
    learning["shadow"] = {"opt_out_tenants": [tenant_id("other"), secret]}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(base() | {"learning": learning}))
    env = {"PATH": "/usr/bin:/bin", "FERRYMAN_API_KEYS": secret}
    argv = [sys.executable, "-m", "ferryman", "gateway", "--config", str(path), "--http-port", "0", "--grpc-port", "0"]
    argv += ["--admin-port", "0"]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2, proc.stderr
    assert (
        "learning.shadow.opt_out_tenants[1]: not a tenant id ('t-' and 16 hex digits, or "
        "'anonymous'); a client key's tenant id is printed by `printf '%s\\n' \"$KEY\" | ferryman learn tenant-id`"
    ) in proc.stderr
    assert secret not in proc.stderr + proc.stdout
    assert not (tmp_path / "l.db").exists()


def test_cli_reports_config_errors_and_missing_client_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_mutate(base(), "models.big.provider", "azure")))
    run = [sys.executable, "-m", "ferryman", "gateway", "--config"]
    proc = subprocess.run([*run, str(bad)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "models.big.provider" in proc.stderr
    proc = subprocess.run([*run, str(bad), "--http-port", "70000"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "--http-port: 70000 is not a port number (0 to 65535)" in proc.stderr
    proc = subprocess.run([*run, str(bad), "--scorer", "dns:///s:99999"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "--scorer: 'dns:///s:99999': port '99999' is not a port number" in proc.stderr
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(base()))
    env = {"PATH": "/usr/bin:/bin", "FERRYMAN_API_KEYS": ""}
    proc = subprocess.run([*run, str(good)], cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2 and "no client API keys" in proc.stderr and "FERRYMAN_API_KEYS" in proc.stderr


def test_an_http_or_admin_port_in_use_stops_start_up_naming_the_listener_and_its_field(tmp_path):
    """Was: uvicorn's "ERROR:    [Errno 98] error while attempting to bind on address" (its own format) and exit 3;
    the gateway's line naming the listener never came (uvicorn's sys.exit left the event loop first), so with
    admin.port set to the HTTP port, nothing else holding it, nothing said which listener it was (a gRPC port in
    use already said so)."""
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(base()))
    run = [sys.executable, "-m", "ferryman", "gateway", "--config", str(good), "--host", "127.0.0.1"]
    run += ["--scorer", "ipv4:127.0.0.1:1", "--grpc-port", "0"]
    env = {"PATH": "/usr/bin:/bin", "FERRYMAN_API_KEYS": "k"}
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        for listener, ports, field in (
            ("HTTP", ["--http-port", str(port), "--admin-port", "0"], "server.http_port, --http-port"),
            ("admin", ["--http-port", "0", "--admin-port", str(port)], "admin.port, --admin-port"),
        ):
            proc = subprocess.run([*run, *ports], cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
            assert proc.returncode == 1, proc.stderr
            assert proc.stderr.endswith(
                f"ferryman gateway: cannot bind the {listener} listener to 127.0.0.1:{port}: address in use or not "
                f"available ({field})\n"
            ), proc.stderr
            assert (
                f" ERROR uvicorn.error: [Errno 98] error while attempting to bind on address ('127.0.0.1', {port})"
                in (proc.stderr)
            )  # uvicorn's line in the gateway's log format
            assert "Traceback" not in proc.stderr


def test_the_shipped_configs_commented_n_tier_examples_are_valid():
    """The commented tiers / calibration / sticky / llm_routers / policy examples of config/gateway.yaml load."""
    import re

    text = (REPO / "config" / "gateway.yaml").read_text()
    data = yaml.safe_load(text)
    for key in ("tiers", "calibration", "sticky", "llm_routers"):
        block = re.search(rf"^# {key}:.*(?:\n#   .*)*", text, re.M)
        assert block is not None, key
        data.update(yaml.safe_load("\n".join(line[2:] for line in block.group(0).splitlines())))
    examples = [line.replace("# ", "", 1) for line in text.splitlines() if line.startswith("  # ferryman-")]
    data["policies"].update(yaml.safe_load("\n".join(examples)))
    config = parse_config(data)
    assert config.tiers.names == ("small", "medium", "large") and config.calibration.online
    assert set(config.policies) >= {"ferryman-chat", "ferryman-budget", "ferryman-explained", "ferryman-dollars"}
    assert config.policies["ferryman-dollars"].cost_per_request_usd == 0.002
    assert config.llm_routers["rater"].fallback_router == "mf" and config.policies["ferryman-chat"].sticky


def test_a_router_the_scorer_does_not_serve_is_an_error_naming_the_config_field(fakes, scorer_address, caplog):
    """A policy or routing.default_router naming a router the scorer does not serve (a typo, an artifact missing
    from its routers directory): an ERROR naming the field and what the scorer serves, and the policy's requests
    get a 400 with the same words. Was: only the self-check's WARNING, and a 400 'unknown router' with code
    model_not_found, as if the client's (valid) model name were wrong. Not fatal: a scorer may be being rolled out."""
    import logging

    import openai

    from harness.gateway import CLIENT_KEY, GatewayThread, config_dict

    caplog.set_level(logging.ERROR, logger="gateway.policy")
    policies = {"typo": {"router": "fm", "strong_share": 0.3}, "llm": {"router": "rater", "threshold": 0.5}}
    llm = {"rater": {"model": "weak-openai", "fallback_router": "nope"}}
    data = config_dict(fakes, scorer_target=f"dns:///{scorer_address}", policies=policies, llm_routers=llm)
    served = "which serves: bert, mf, random, sw"
    with GatewayThread(parse_config(data)) as g:
        client = openai.OpenAI(base_url=g.http_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
        messages = [{"role": "user", "content": "hi"}]
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="typo", messages=messages)
        assert info.value.code != "model_not_found"
        assert info.value.message.endswith(f"router 'fm' (policies.typo.router) is not served by the scorer, {served}")
        assert client.chat.completions.create(model="ferryman-balanced", messages=messages).choices
        # A client's own name for a router the scorer does not serve: 404 model_not_found, as OpenAI answers an
        # unknown model, for a threshold and a share alike (was: 400 "the scorer rejected the routing request"
        # for router-zz-0.5 and 404 for router-zz-s0.3; and the share form's message was "unknown router 'zz'" alone)
        for name in ("router-zz-0.5", "router-zz-s0.3"):
            with pytest.raises(openai.NotFoundError) as missing:
                client.chat.completions.create(model=name, messages=messages)
            assert missing.value.code == "model_not_found", name
            assert missing.value.message.endswith("unknown router 'zz'; the scorer serves: bert, mf, random, sw")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"configuration error: router 'fm' (policies.typo.router) is not served by the scorer, {served}" in errors
    assert (
        "configuration error: router 'nope' (llm_routers.rater.fallback_router (via policies.llm.router)) is not "
        f"served by the scorer, {served}"
    ) in errors
