"""Routers: one module per design behind the ``Router`` protocol, loaded from artifacts.

numpy/onnxruntime only; nothing here may import torch.
"""

from __future__ import annotations

from collections.abc import Callable

from scorer.artifacts import Artifact
from scorer.routers.base import LoadContext, Router
from scorer.routers.bert import BertRouter
from scorer.routers.mf import MFRouter
from scorer.routers.random import RandomRouter
from scorer.routers.sw import SWRouter

__all__ = ["LOADERS", "LoadContext", "Router", "load_router"]

LOADERS: dict[str, Callable[[Artifact, LoadContext], Router]] = {
    "mf": MFRouter,
    "sw": SWRouter,
    "bert": BertRouter,
    "random": RandomRouter,
}


def load_router(artifact: Artifact, ctx: LoadContext) -> Router:
    """Build the router an artifact describes; raises ``ArtifactError`` naming the bad file."""
    return LOADERS[artifact.manifest.kind](artifact, ctx)
