"""A real gateway (gRPC + HTTP) in a background event loop, and configs over fake providers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from gateway.config import GatewayConfig, parse_config
from gateway.main import RunningGateway, start_gateway
from gateway.service import Runtime
from harness.fake_provider import FakeProvider

CLIENT_KEY = "test-client-key-1"
PROVIDER_KEY = "sk-test-provider-secret-0123456789"
ENV = {"FAKE_PROVIDER_KEY": PROVIDER_KEY}


def gateway_config(fakes: Mapping[str, FakeProvider], **kwargs: Any) -> GatewayConfig:
    """A validated config over the fake providers (see ``config_dict``)."""
    return parse_config(config_dict(fakes, **kwargs))


def config_dict(
    fakes: Mapping[str, FakeProvider],
    *,
    scorer_target: str = "dns:///127.0.0.1:1",
    strong: tuple[str, ...] = ("strong-openai", "strong-anthropic"),
    weak: tuple[str, ...] = ("weak-openai", "weak-anthropic"),
    model_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """A config whose models point at fake providers (name → fake; kind from the name)."""
    models = {
        name: {
            "provider": "anthropic" if "anthropic" in name else "openai",
            "base_url": fake.base_url,
            "api_key_env": "FAKE_PROVIDER_KEY",
            "price_in_per_mtok": 10.0 if name.startswith("strong") else 0.5,
            "price_out_per_mtok": 30.0 if name.startswith("strong") else 1.5,
            "connect_timeout_s": 1.0,
            "read_timeout_s": 2.0,
        }
        for name, fake in fakes.items()
    }
    for name, override in (model_overrides or {}).items():
        models[name] = models[name] | dict(override)
    data: dict[str, Any] = {
        "models": models,
        "tiers": {"strong": {"models": list(strong)}, "weak": {"models": list(weak)}},
        "policies": {
            "ferryman-balanced": {"router": "mf", "strong_share": 0.3},
            "fixed-half": {"router": "random", "threshold": 0.5},
        },
        "scorer": {"target": scorer_target, "deadline_ms": 2000, "list_routers_deadline_ms": 5000},
        "retry": {"max_retries": 2, "base_delay_s": 0.01, "max_delay_s": 0.05, "max_retry_after_s": 1.0},
        "breaker": {"failure_rate": 0.5, "min_requests": 3, "reset_timeout_s": 30},
        "server": {"grpc_host": "127.0.0.1", "grpc_port": 0, "http_host": "127.0.0.1", "http_port": 0},
        "admin": {"host": "127.0.0.1", "port": 0},
        "auth": {"keys_env": "TEST_CLIENT_KEYS"},
    }
    for key, value in sections.items():
        data[key] = (data.get(key) or {}) | value if isinstance(value, dict) else value
    return data


class GatewayThread:
    """``start_gateway`` in its own thread and event loop, so tests can use blocking clients."""

    def __init__(
        self, config: GatewayConfig, *, redis_url: str | None = None, keys: frozenset[str] = frozenset({CLIENT_KEY})
    ):
        self.runtime = Runtime(redis_url=redis_url, client_keys=keys, environ=ENV)
        self.config = config
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.running: RunningGateway | None = None

    def call(self, coro: Any, timeout: float = 30) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def __enter__(self) -> GatewayThread:
        self._thread.start()
        try:
            self.running = self.call(start_gateway(self.config, self.runtime))
        except BaseException:
            self._stop_loop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.running is not None:
            self.call(self.running.stop(grace_s=1))
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def gateway(self) -> Any:
        assert self.running is not None
        return self.running.gateway

    @property
    def http_url(self) -> str:
        assert self.running is not None
        return f"http://127.0.0.1:{self.running.http_port}"

    @property
    def admin_url(self) -> str:
        assert self.running is not None
        return f"http://127.0.0.1:{self.running.admin_port}"

    @property
    def grpc_target(self) -> str:
        assert self.running is not None
        return f"127.0.0.1:{self.running.grpc_port}"
