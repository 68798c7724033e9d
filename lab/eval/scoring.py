"""Scoring prompt sets through the scorer's BatchScore RPC, as production does.

Evaluation and calibration never call router code directly: they start a real
scorer in-process on loopback over a temporary routers directory of symlinks
(:func:`local_scorer`), or talk to a running one (``--scorer ADDRESS``), and
send BatchScore requests over a real channel. Items for several routers on the
same prompt are sent next to each other so the scorer's shared encoder pass
serves them all.

Scores are cached on disk per router fingerprint (name, version, provenance, the
artifact's content digest and the model pair compared, as ListRouters reports
them, and the scorer's encoder fingerprint), so re-running an evaluation only
scores what changed. The encoder fingerprint (:attr:`scorer.encoder.Encoder.fingerprint`)
is known for a scorer this process starts (:func:`local_scorer` computes it on the
same encoder directory and precision); ListRouters does not report it, so scores
from a scorer at ``--scorer ADDRESS`` are cached without it (a warning says so).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from ferryman.scorer.v1 import scorer_pb2, scorer_pb2_grpc
from scorer.artifacts import MANIFEST_NAME
from scorer.encoder import Encoder, Precision

_RETRY_CODES = (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)
# Encoder fingerprint of each scorer ``local_scorer`` runs, by address, while it runs.
_LOCAL_ENCODERS: dict[str, str] = {}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RouterRef:
    """A loaded router as ListRouters describes it, plus the pair eval asks it to compare."""

    name: str
    version: str
    kind: str
    models: tuple[str, ...]
    provenance: Mapping[str, str]
    strong: str
    weak: str
    artifact_version: str = ""  # "<version>@<manifest sha256 prefix>": changes with any file or manifest field
    encoder_fingerprint: str = ""  # the scorer's Encoder.fingerprint ("" = unknown): changes with its numerics

    @property
    def fingerprint(self) -> str:
        """Stable id of what produced a score: changes when the artifact, the encoder or the pair changes."""
        parts = [self.name, self.version, self.kind, list(self.models), dict(sorted(self.provenance.items()))]
        parts += [self.artifact_version, self.encoder_fingerprint]
        raw = json.dumps([*parts, self.strong, self.weak], sort_keys=True)
        return hashlib.sha1(raw.encode("utf-8")).hexdigest()[:16]


def choose_pair(info: scorer_pb2.RouterInfo, strong: str, weak: str) -> tuple[str, str]:
    """Compare ``strong`` vs ``weak`` when the router knows both, else its default pair."""
    if strong in info.models and weak in info.models:
        return strong, weak
    return info.default_strong_model, info.default_weak_model


READY_WAIT_S = 60.0  # how long a client waits for a scorer to accept connections


class ScorerUnreachableError(ValueError):
    """No scorer answers at the address given (``--scorer``): a wrong address or a stopped scorer."""


class ScorerClient:
    """BatchScore client with batching, retry on overload, progress output and a score cache."""

    def __init__(
        self,
        target: str,
        *,
        strong: str,
        weak: str,
        batch_size: int = 64,
        timeout_s: float = 300.0,
        cache_dir: Path | None = None,
        encoder_fingerprint: str | None = None,
    ) -> None:
        """``encoder_fingerprint``: the scorer's ``Encoder.fingerprint``; None: the one ``local_scorer``
        computed for ``target``, else unknown ("")."""
        self.encoder_fingerprint = (
            _LOCAL_ENCODERS.get(target, "") if encoder_fingerprint is None else encoder_fingerprint
        )
        if cache_dir is not None and not self.encoder_fingerprint:
            log.warning(
                "scores from the scorer at %s are cached in %s without its encoder's fingerprint (it does not "
                "report one): after an encoder change, clear that cache or pass --no-cache",
                target,
                cache_dir,
            )
        self._channel = grpc.insecure_channel(target)
        self._stub = scorer_pb2_grpc.ScorerServiceStub(self._channel)
        self._batch = batch_size
        self._timeout = timeout_s
        self._cache_dir = cache_dir
        self._strong, self._weak = strong, weak
        self.target = target
        self._wait_ready(READY_WAIT_S)
        self.routers = self._list()

    def _wait_ready(self, timeout_s: float) -> None:
        """Wait for the scorer to accept connections, saying so after a moment; a clear error when it never does
        (was: a minute of silence, then a ``grpc.FutureTimeoutError`` traceback)."""
        ready = grpc.channel_ready_future(self._channel)
        try:
            ready.result(timeout=min(2.0, timeout_s))
            return
        except grpc.FutureTimeoutError:
            print(f"waiting for the scorer at {self.target} (up to {timeout_s:.0f} s) ...", file=sys.stderr, flush=True)
        try:
            ready.result(timeout=max(0.0, timeout_s - 2.0))
        except grpc.FutureTimeoutError:
            self._channel.close()
            raise ScorerUnreachableError(
                f"no scorer answers at {self.target} (waited {timeout_s:.0f} s): start one there (ferryman scorer) "
                "or leave --scorer out to score in this process"
            ) from None

    def _list(self) -> dict[str, RouterRef]:
        resp = self._stub.ListRouters(scorer_pb2.ListRoutersRequest(), timeout=60)
        out = {}
        for info in resp.routers:
            strong, weak = choose_pair(info, self._strong, self._weak)
            kind = scorer_pb2.RouterType.Name(info.type).removeprefix("ROUTER_TYPE_").lower()
            out[info.name] = RouterRef(
                info.name,
                info.version,
                kind,
                tuple(info.models),
                dict(info.provenance),
                strong,
                weak,
                artifact_version=info.artifact_version,
                encoder_fingerprint=self.encoder_fingerprint if info.encoder else "",  # random embeds nothing
            )
        return out

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> ScorerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ref(self, name: str) -> RouterRef:
        """The loaded router ``name``; a clear error lists what is loaded."""
        try:
            return self.routers[name]
        except KeyError:
            loaded = ", ".join(sorted(self.routers)) or "none"
            raise KeyError(f"router {name!r} is not loaded by the scorer at {self.target} (loaded: {loaded})") from None

    def score(
        self, items: Sequence[tuple[str, str, str]], *, label: str = "scoring", progress: bool = True
    ) -> np.ndarray:
        """Scores of ``(router, prompt key, prompt)`` items, in order; cached ones are not re-sent."""
        refs = {name: self.ref(name) for name in {r for r, _, _ in items}}
        cache = {name: _ScoreCache(self._cache_dir, ref) for name, ref in refs.items()}
        out = np.full(len(items), np.nan)
        todo: list[int] = []
        for i, (router, key, prompt) in enumerate(items):
            hit = cache[router].get(cache_key(key, prompt))
            if hit is None:
                todo.append(i)
            else:
                out[i] = hit
        # Same prompt next to each other so one encoder pass serves every router in the batch.
        todo.sort(key=lambda i: (items[i][1], items[i][0]))
        meter = _Progress(label, len(items), len(items) - len(todo), enabled=progress)
        for start in range(0, len(todo), self._batch):
            chunk = todo[start : start + self._batch]
            requests = []
            for i in chunk:
                router, _, prompt = items[i]
                ref = refs[router]
                requests.append(
                    scorer_pb2.ScoreRequest(router=router, prompt=prompt, strong_model=ref.strong, weak_model=ref.weak)
                )
            responses = self._batch_score(requests)
            for i, resp in zip(chunk, responses, strict=True):
                out[i] = resp.strong_win_rate
                router, key, prompt = items[i]
                cache[router].put(cache_key(key, prompt), resp.strong_win_rate)
            meter.advance(len(chunk))
        for c in cache.values():
            c.save()
        meter.done()
        return out

    def _batch_score(self, requests: list[scorer_pb2.ScoreRequest]) -> Sequence[scorer_pb2.ScoreResponse]:
        delay = 0.2
        for attempt in range(8):
            try:
                resp = self._stub.BatchScore(scorer_pb2.BatchScoreRequest(requests=requests), timeout=self._timeout)
                return list(resp.responses)
            except grpc.RpcError as exc:
                if exc.code() not in _RETRY_CODES or attempt == 7:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")


def cache_key(key: str, prompt: str) -> str:
    """A prompt's score-cache entry: its key and a digest of its exact text.

    Prompt keys are of whitespace-normalised text, and routers may score two spellings of one
    prompt differently (the random router hashes the exact text, the length head counts characters).
    """
    return f"{key}:{hashlib.sha1(prompt.encode('utf-8')).hexdigest()[:16]}"


class _ScoreCache:
    """``key -> score`` for one router fingerprint, in ``<dir>/<name>-<fingerprint>.json``."""

    def __init__(self, cache_dir: Path | None, ref: RouterRef) -> None:
        self._path = cache_dir / f"{ref.name}-{ref.fingerprint}.json" if cache_dir is not None else None
        self._data: dict[str, float] = {}
        self._dirty = False
        if self._path is not None and self._path.is_file():
            with contextlib.suppress(OSError, ValueError):
                self._data = {str(k): float(v) for k, v in json.loads(self._path.read_text("utf-8")).items()}

    def get(self, key: str) -> float | None:
        return self._data.get(key)

    def put(self, key: str, value: float) -> None:
        self._data[key] = value
        self._dirty = True

    def save(self) -> None:
        if self._path is None or not self._dirty:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._data), encoding="utf-8")
        tmp.replace(self._path)
        self._dirty = False


class _Progress:
    """Progress lines on stderr for long scoring runs (rate and ETA), at most every few seconds."""

    def __init__(self, label: str, total: int, done: int, *, enabled: bool) -> None:
        self.label, self.total, self.done_count = label, total, done
        self.enabled = enabled
        self._start = time.perf_counter()
        self._last = 0.0
        self._fresh = 0
        if enabled and done:
            print(f"{label}: {done}/{total} cached", file=sys.stderr, flush=True)

    def advance(self, n: int) -> None:
        self.done_count += n
        self._fresh += n
        now = time.perf_counter()
        if self.enabled and now - self._last >= 5.0:
            self._last = now
            rate = self._fresh / max(now - self._start, 1e-9)
            eta = (self.total - self.done_count) / rate if rate > 0 else float("inf")
            print(
                f"{self.label}: {self.done_count}/{self.total} ({rate:.0f} items/s, ~{eta:.0f} s left)",
                file=sys.stderr,
                flush=True,
            )

    def done(self) -> None:
        if self.enabled and self._fresh:
            took = time.perf_counter() - self._start
            print(
                f"{self.label}: {self.total} done ({self._fresh} scored in {took:.1f} s)", file=sys.stderr, flush=True
            )


def link_routers(dest: Path, artifacts: Mapping[str, Path]) -> Path:
    """A routers directory of symlinks ``dest/<name> -> artifact dir`` (what the scorer loads)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, src in artifacts.items():
        if not (src / MANIFEST_NAME).is_file():
            raise FileNotFoundError(f"{src / MANIFEST_NAME}: router artifact not found")
        (dest / name).symlink_to(src.resolve(), target_is_directory=True)
    return dest


@contextlib.contextmanager
def local_scorer(
    artifacts: Mapping[str, Path], encoder_dir: Path, *, threads: int = 2, precision: Precision = "int8"
) -> Iterator[str]:
    """Run a real scorer in-process on 127.0.0.1 (port 0) over ``artifacts``; yields its address.

    A ``ScorerClient`` on that address keys its score cache by the encoder's fingerprint, computed
    here on an encoder of the same directory and precision (the same code, sessions and CPU).
    """
    from scorer.config import ScorerConfig
    from scorer.server import serving_in_thread  # the scorer's own embedded server runner

    with tempfile.TemporaryDirectory(prefix="ferryman-eval-") as tmp:
        routers_dir = link_routers(Path(tmp) / "routers", artifacts)
        config = ScorerConfig(
            routers_dir=routers_dir,
            encoder_dir=encoder_dir,
            host="127.0.0.1",
            port=0,
            metrics_port=0,
            grace_s=5.0,
            intra_op_threads=threads,
            encoder_precision=precision,
        )
        fingerprint = Encoder(encoder_dir, precision=precision).fingerprint
        with serving_in_thread(config) as target:
            _LOCAL_ENCODERS[target] = fingerprint
            try:
                yield target
            finally:
                _LOCAL_ENCODERS.pop(target, None)
