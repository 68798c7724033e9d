"""Typed settings of the scorer service (built in ``scorer.main`` from flags and environment)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from scorer.batching import BatchingConfig
from scorer.core import Limits
from scorer.encoder import Precision, default_idle_threads


@dataclass(frozen=True)
class ScorerConfig:
    """Everything ``create_server`` needs."""

    routers_dir: Path = Path("routers")
    encoder_dir: Path = Path("build/encoder")
    encoder_precision: Precision = "int8"
    routers: tuple[str, ...] | None = None  # None: every artifact under routers_dir
    host: str = "0.0.0.0"
    port: int = 50051
    metrics_port: int = 9090  # 0 disables the Prometheus endpoint
    intra_op_threads: int = 1  # per ONNX run while other scoring calls run (each worker its own core)
    # per ONNX run for a call that runs alone, on otherwise idle cores, threads sleeping or spinning
    # between operators, whichever is measured cheaper (bit-identical results; a 256-token window
    # ~1.5x / ~1.9x faster on 2 free vCPUs, see docs/scorer.md)
    idle_intra_op_threads: int = field(default_factory=default_idle_threads)
    # NumPy BLAS threads (router heads, SW similarities). The inference workers already use the
    # cores; a second OpenBLAS thread spins after each multi-row product and takes a core from them
    # (SW at concurrency 64: 41.8 -> 52.6 Score/s with OPENBLAS_NUM_THREADS=1, measured side by side).
    blas_threads: int = 1
    rows_per_run: int = 1  # sequences per ONNX run; 1 = scores independent of batch mates
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    limits: Limits = field(default_factory=Limits)
    grace_s: float = 10.0
    # Request sizes, checked before a request is parsed: protobuf parsing holds the GIL, so a
    # 6 MB Score of 3 million empty messages stalled every other call for 0.2-0.4 s just to parse
    # (and 2.2 s to read). 2 MiB holds any prompt up to the 1,000,000-character limit in ASCII;
    # a BatchScore of 8 MiB is at most ~0.3 s of parsing even when made of empty messages.
    max_score_bytes: int = 2 * 1024 * 1024
    max_batch_score_bytes: int = 8 * 1024 * 1024
    # SO_REUSEPORT lets a second server bind a port in use and the kernel split connections
    # between them; off, a second scorer on the same port fails to start instead.
    reuse_port: bool = False
    # Seconds between checks of the routers' version pointers (scorer.reload; SIGHUP checks at
    # once); 0: only on SIGHUP.
    reload_interval_s: float = 2.0
    # A client connection is closed (GOAWAY; the calls under way finish) after about this many
    # seconds, so a gateway dialling dns:///scorer... re-resolves the name and spreads its calls over
    # scorers added since: gRPC resolves DNS only when a connection ends, so without this a scorer
    # that scaled out or was rescheduled got no calls from the gateways already running. 0: never.
    max_connection_age_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_connection_age_s < 0:
            raise ValueError(f"max connection age must be >= 0 s (0: never), got {self.max_connection_age_s}")
        if min(self.blas_threads, self.intra_op_threads, self.idle_intra_op_threads) < 1:
            raise ValueError(
                f"blas threads ({self.blas_threads}) and intra-op threads ({self.intra_op_threads}, idle "
                f"{self.idle_intra_op_threads}) must be >= 1"
            )
        if self.limits.max_request_cost > self.batching.max_caller_cost:
            raise ValueError(
                f"max request cost ({self.limits.max_request_cost}) must not exceed one caller's queue "
                f"({self.batching.max_caller_cost}), or a request within the limits could never be admitted"
            )
        if self.reload_interval_s < 0:
            raise ValueError(f"reload interval must be >= 0 (0: only on SIGHUP), is {self.reload_interval_s}")
        if min(self.max_score_bytes, self.max_batch_score_bytes) < 1024:
            raise ValueError("request size limits must be at least 1024 bytes")

    @property
    def max_message_bytes(self) -> int:
        """The largest message gRPC accepts at all (the larger of the per-method limits)."""
        return max(self.max_score_bytes, self.max_batch_score_bytes)
