"""What tests and benchmarks share; never imported by ``scorer/``, ``gateway/`` or ``lab/`` (``make lint``).

- :mod:`harness.scorer`: small valid router artifacts (``build_test_routers``) and an in-process scorer
- :mod:`harness.gateway`: a real gateway in a background event loop and configs over fake providers
- :mod:`harness.fake_provider`: a fake LLM provider (OpenAI and Anthropic APIs) with programmable faults
- :mod:`harness.processes`: spawning servers, waiting for them, free ports, a throw-away redis-server
- :mod:`harness.cluster`: the local cluster (scorers, gateways, fake provider, Redis on loopback)
- :mod:`harness.data_slice`: a small slice of the public data, for fast training tests
- :mod:`harness.cli_args`: parse a ``ferryman`` argument list with the real subcommand parser
"""
