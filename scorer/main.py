"""``ferryman scorer``: serve the scorer over gRPC.

Settings come from flags, each defaulting to an environment variable
``FERRYMAN_SCORER_<FLAG>`` (e.g. ``FERRYMAN_SCORER_PORT=50052``), and are built
into a ``ScorerConfig`` here, never at import time. A missing or corrupt artifact
stops start-up with an error naming the file and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from ferryman import paths, ports, signals
from ferryman.logs import configure_logging
from scorer.batching import BatchingConfig
from scorer.config import ScorerConfig
from scorer.core import Limits
from scorer.errors import ArtifactError

ENV_PREFIX = "FERRYMAN_SCORER_"
log = logging.getLogger("ferryman.scorer")


def _flag(
    parser: argparse.ArgumentParser,
    name: str,
    kind: Callable[[str], Any],
    default: Any,
    text: str,
    choices: Sequence[str] | None = None,
) -> None:
    env = ENV_PREFIX + name.upper().replace("-", "_")
    # A string default from the environment goes through ``type`` like a flag would, so a bad
    # value is reported by argparse instead of a traceback; ``_EnvValue`` lets the message name the
    # variable, and the choices are checked here (argparse checks them for flags only).
    value = os.environ.get(env)

    def typed(text: str) -> Any:
        if not isinstance(text, _EnvValue):
            return kind(text)
        try:
            out = kind(text)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"{env}={str(text)!r}: {exc}") from None
        except ValueError:
            raise argparse.ArgumentTypeError(f"{env}={str(text)!r}: not a valid {typed.__name__}") from None
        if choices is not None and out not in choices:
            raise argparse.ArgumentTypeError(f"{env}={str(text)!r}: choose from {', '.join(choices)}")
        return out

    typed.__name__ = getattr(kind, "__name__", "value")  # argparse's 'invalid int value' for a bad flag

    parser.add_argument(
        f"--{name}",
        type=typed,
        default=default if value is None else _EnvValue(value),
        choices=choices,
        help=f"{text} [env {env}]",
    )


class _EnvValue(str):
    """A flag's default read from its ``FERRYMAN_SCORER_*`` variable (so its errors can name the variable)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d, b, lim = ScorerConfig(), BatchingConfig(), Limits()
    _flag(parser, "routers-dir", Path, paths.routers_dir(), "directory of router artifacts (one subdirectory each)")
    _flag(parser, "routers", str, "", "comma-separated router names to serve (default: all under --routers-dir)")
    _flag(parser, "encoder-dir", Path, paths.encoder_dir(), "ONNX encoder built by `ferryman build encoder`")
    _flag(parser, "encoder-precision", str, d.encoder_precision, "encoder graph", ("int8", "fp32"))
    _flag(parser, "host", str, d.host, "address to bind")
    _flag(parser, "port", ports.port, d.port, "gRPC port (0: any free port)")
    _flag(parser, "metrics-port", ports.port, d.metrics_port, "Prometheus /metrics port (0: disabled)")
    _flag(parser, "workers", int, b.workers, "inference worker threads (batches run in parallel)")
    _flag(parser, "intra-op-threads", int, d.intra_op_threads, "onnxruntime threads per inference")
    _flag(
        parser,
        "idle-intra-op-threads",
        int,
        d.idle_intra_op_threads,
        "onnxruntime threads for an inference that runs alone (default: usable CPUs, at most 4)",
    )
    _flag(parser, "blas-threads", int, d.blas_threads, "NumPy BLAS threads (router heads; workers are the parallelism)")
    _flag(parser, "rows-per-run", int, d.rows_per_run, "sequences per ONNX run (1: exact batch invariance)")
    _flag(parser, "max-batch", int, b.max_batch, "most items per inference batch")
    _flag(parser, "max-wait-ms", float, b.max_wait_s * 1000, "longest wait for a batch to fill while another runs")
    _flag(
        parser,
        "max-batch-cost",
        int,
        b.max_batch_cost,
        "most cost (~tokens) in one inference batch: bounds how long a worker is held by one batch",
    )
    _flag(
        parser,
        "max-queue-cost",
        int,
        b.max_queue_cost,
        "queued cost (~tokens) of all callers beyond which calls get RESOURCE_EXHAUSTED",
    )
    _flag(
        parser,
        "max-caller-cost",
        int,
        b.max_caller_cost,
        "queued cost (~tokens) of one caller (peer connection) beyond which its calls get RESOURCE_EXHAUSTED",
    )
    _flag(parser, "max-prompt-chars", int, lim.max_prompt_chars, "longest accepted prompt (characters)")
    _flag(parser, "max-messages", int, lim.max_messages, "most messages in one conversation")
    _flag(parser, "max-batch-items", int, lim.max_batch_items, "most items in one BatchScore request")
    _flag(
        parser,
        "max-request-cost",
        int,
        lim.max_request_cost,
        "most estimated tokens one request may need (a larger BatchScore gets INVALID_ARGUMENT: split it)",
    )
    _flag(parser, "max-score-bytes", int, d.max_score_bytes, "largest Score request (bytes), checked before parsing")
    _flag(
        parser,
        "max-batch-score-bytes",
        int,
        d.max_batch_score_bytes,
        "largest BatchScore request (bytes), checked before parsing",
    )
    parser.add_argument(
        "--reuse-port",
        action="store_true",
        default=os.environ.get(ENV_PREFIX + "REUSE_PORT", "") not in ("", "0", "false"),
        help="let several servers share the port (SO_REUSEPORT; default: a port in use is a start-up error) "
        f"[env {ENV_PREFIX}REUSE_PORT]",
    )
    _flag(
        parser,
        "reload-interval-s",
        float,
        d.reload_interval_s,
        "seconds between checks of each router's version pointer (a promoted or rolled-back version is "
        "loaded without a restart; SIGHUP checks at once; 0: only on SIGHUP)",
    )
    _flag(parser, "grace-s", float, d.grace_s, "seconds in-flight calls get to finish on SIGTERM")
    _flag(
        parser,
        "max-connection-age-s",
        float,
        d.max_connection_age_s,
        "close each client connection after about this long (the calls under way finish), so gateways "
        "re-resolve dns:/// targets and reach scorers added since (0: never)",
    )
    _flag(parser, "log-level", str.upper, "INFO", "logging level", ("DEBUG", "INFO", "WARNING", "ERROR"))


def config_from_args(args: argparse.Namespace) -> ScorerConfig:
    """Validated settings from parsed flags."""
    routers = tuple(r.strip() for r in args.routers.split(",") if r.strip()) or None
    return ScorerConfig(
        routers_dir=args.routers_dir,
        encoder_dir=args.encoder_dir,
        encoder_precision=args.encoder_precision,
        routers=routers,
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        intra_op_threads=args.intra_op_threads,
        idle_intra_op_threads=args.idle_intra_op_threads,
        blas_threads=args.blas_threads,
        rows_per_run=args.rows_per_run,
        batching=BatchingConfig(
            max_batch=args.max_batch,
            max_batch_cost=args.max_batch_cost,
            max_wait_s=args.max_wait_ms / 1000,
            max_queue_cost=args.max_queue_cost,
            max_caller_cost=args.max_caller_cost,
            workers=args.workers,
        ),
        limits=Limits(
            max_prompt_chars=args.max_prompt_chars,
            max_messages=args.max_messages,
            max_batch_items=args.max_batch_items,
            max_request_cost=args.max_request_cost,
        ),
        grace_s=args.grace_s,
        max_score_bytes=args.max_score_bytes,
        max_batch_score_bytes=args.max_batch_score_bytes,
        reuse_port=args.reuse_port,
        reload_interval_s=args.reload_interval_s,
        max_connection_age_s=args.max_connection_age_s,
    )


async def serve(config: ScorerConfig) -> None:
    """Serve until SIGTERM/SIGINT, then stop gracefully (a signal while loading stops without serving);
    SIGHUP reloads changed router versions."""
    from scorer.server import ScorerServer

    stop = signals.stop_event()
    server = ScorerServer(config)
    port = await server.start()
    log.info("listening on %s:%d (loading routers)", config.host, port)
    loading = asyncio.create_task(server.load())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not loading.done():
            log.info("signal received while loading: stopping without serving")
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            await server.stop(0)
            log.info("stopped (before serving)")
            return
        loading.result()  # a bad artifact raises here
    except BaseException:
        stopping.cancel()
        await server.stop(0)
        raise
    assert server.core is not None
    # SIGHUP: check the routers' version pointers now (installed before "serving" is announced,
    # so a SIGHUP right after it reloads instead of ending the process).
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, server.reload_soon)
    names = ", ".join(server.core.routers)
    log.info("serving routers %s on %s:%d", names, config.host, port)
    await stopping
    log.info("signal received: draining (grace %.1f s)", config.grace_s)
    await server.stop()
    log.info("stopped")


def _quiet_onnxruntime() -> None:
    """onnxruntime writes its own lines on stderr (its own format, colour codes, no logger): only its errors,
    unless the scorer logs at DEBUG, where its warnings (an unused initializer, a graph rewrite) show too."""
    import onnxruntime as ort

    debug = logging.getLogger().getEffectiveLevel() <= logging.DEBUG
    ort.set_default_logger_severity(2 if debug else 3)  # 2 warning, 3 error


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    _quiet_onnxruntime()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # worker threads already use the cores
    try:
        config = config_from_args(args)
        with threadpool_limits(limits=config.blas_threads, user_api="blas"):
            asyncio.run(serve(config))
    except (ArtifactError, ValueError, OSError) as exc:
        print(f"ferryman scorer: error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0
