"""On-disk cache of prompt embeddings from the serving ONNX encoder.

MF and SW train on the exact vectors the scorer computes at serving time, so
they embed with :class:`scorer.encoder.Encoder` (same precision and
:class:`~scorer.artifacts.EncoderSpec` as the manifest). Encoding ~15k prompts
takes minutes on two cores, so vectors are cached under ``build/cache/`` keyed
by the SHA-1 of the exact text, in one file per encoder precision and spec.

Each file also stores the encoder's :attr:`~scorer.encoder.Encoder.fingerprint` (a digest of
its embeddings of fixed probe texts). A file whose fingerprint is missing or differs from the
encoder's is stale: a different graph file, session option or CPU kernel path produced it. It
is recomputed, with a log line saying why, rather than trusted.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scorer.artifacts import FULL_LAYERS
from scorer.encoder import Encoder

log = logging.getLogger(__name__)


def text_hash(text: str) -> str:
    """SHA-1 of the exact text (whitespace matters to the encoder, so no normalisation)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def cache_path(cache_dir: Path, encoder: Encoder, stem: str = "emb") -> Path:
    """Cache file for an encoder's precision and truncation spec (and its depth, when truncated); ``stem``
    names what its graph outputs (``emb``: the serving encoder's unit vectors; another graph's vectors get
    their own file)."""
    spec = encoder.spec
    depth = "" if spec.layers == FULL_LAYERS else f"-L{spec.layers}"
    return cache_dir / f"{stem}-{spec.name}-{encoder.precision}-{spec.max_tokens}-{spec.head_tokens}{depth}.npz"


def _load(path: Path, encoder: Encoder) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    with np.load(path) as data:
        keys, vecs = data["keys"], data["vectors"]
        stored = stored_fingerprint(data)
    if vecs.ndim != 2 or vecs.shape[1] != encoder.dim or len(keys) != len(vecs):
        return {}  # stale or foreign file: recompute rather than trust it
    if stored != encoder.fingerprint:
        why = (
            "has no encoder fingerprint (written before caches stored one)"
            if stored is None
            else f"was written by encoder {stored}, this encoder is {encoder.fingerprint} (other numerics)"
        )
        log.warning("embedding cache %s %s: dropping its %d vectors and recomputing", path, why, len(keys))
        return {}
    return {str(k): v for k, v in zip(keys, vecs, strict=True)}


def embed_cached(
    texts: Sequence[str],
    encoder: Encoder,
    cache_dir: Path | None,
    *,
    rows_per_run: int = 64,
    progress: bool = True,
    stem: str = "emb",
) -> np.ndarray:
    """Embeddings ``[len(texts), dim]`` (float32), encoding only texts not yet cached.

    ``cache_dir=None`` disables the cache (tests that must not share state); ``stem``: see ``cache_path``.
    """
    hashes = [text_hash(t) for t in texts]
    path = cache_path(cache_dir, encoder, stem) if cache_dir is not None else None
    known = _load(path, encoder) if path is not None else {}
    missing: dict[str, str] = {}
    for h, t in zip(hashes, texts, strict=True):
        if h not in known and h not in missing:
            missing[h] = t
    if missing:
        todo = list(missing.items())
        chunk = max(rows_per_run * 16, 1)
        bar = _progress(len(todo), progress)
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            vecs = encoder.encode([t for _, t in part], rows_per_run=rows_per_run)
            known.update({h: v for (h, _), v in zip(part, vecs, strict=True)})
            bar.update(len(part))
            if path is not None:  # save as we go so an interrupted run keeps its work
                _save(path, known, encoder.fingerprint)
        bar.close()
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    for i, h in enumerate(hashes):
        out[i] = known[h]
    return out


def _save(path: Path, known: dict[str, np.ndarray], fingerprint: str) -> None:
    keys = np.array(list(known), dtype="U40")
    save_npz(path, fingerprint, keys=keys, vectors=np.stack(list(known.values())).astype(np.float32))


def save_npz(path: Path, fingerprint: str, **arrays: np.ndarray) -> None:
    """Write a cache file: ``arrays`` and the fingerprint of what computed them, replacing ``path`` at once
    (an interrupted write leaves the old file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    payload: dict[str, Any] = {**arrays, "fingerprint": np.array(fingerprint)}
    np.savez(tmp, **payload)
    tmp.replace(path)


def stored_fingerprint(data: Any) -> str | None:
    """The fingerprint an open cache file (``np.load``) was written with; None if written before caches stored one."""
    return str(data["fingerprint"]) if "fingerprint" in data.files else None


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool) -> _NoBar:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc="embedding", unit="prompt")  # type: ignore[return-value]
