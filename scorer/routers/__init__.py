"""Routers: one module per design behind the ``Router`` protocol, and ``ROUTERS``, the one registry of kinds.

``ROUTERS`` maps a manifest's ``kind`` to the class that loads such an artifact. Every other list
of kinds is derived from it: the kinds the scorer loads (an unknown kind is a start-up error
naming the manifest), ListRouters' ``RouterType`` (``scorer.server.router_type``), the kinds
``ferryman train`` offers (trainer ``lab/train/routers/<kind>.py``), ``ferryman eval``'s default
routers and the harness's test routers. Adding a kind: README, "Adding a router".

numpy/onnxruntime only; nothing here may import torch.
"""

from __future__ import annotations

from collections.abc import Callable

from scorer.artifacts import MANIFEST_NAME, Artifact
from scorer.errors import ArtifactError
from scorer.routers import length_head
from scorer.routers.base import LoadContext, Router
from scorer.routers.bert import BertRouter
from scorer.routers.mf import MFRouter
from scorer.routers.random import RandomRouter
from scorer.routers.sw import SWRouter

__all__ = ["ROUTERS", "ROUTER_KINDS", "LoadContext", "Router", "load_router"]

ROUTERS: dict[str, Callable[[Artifact, LoadContext], Router]] = {
    "mf": MFRouter,
    "sw": SWRouter,
    "bert": BertRouter,
    "random": RandomRouter,
}
ROUTER_KINDS: tuple[str, ...] = tuple(ROUTERS)


def load_router(artifact: Artifact, ctx: LoadContext) -> Router:
    """Build the router an artifact describes; raises ``ArtifactError`` naming the bad file.

    An artifact with ``params.length_head`` gets its length term here, whatever its kind
    (``scorer.routers.length_head``).
    """
    kind = artifact.manifest.kind
    where = artifact.root / MANIFEST_NAME
    loader = ROUTERS.get(kind)
    if loader is None:
        raise ArtifactError(f"{where}: unknown kind {kind!r}; this scorer serves {', '.join(ROUTER_KINDS)}")
    head = length_head.parse(artifact.manifest.params, where)
    router = loader(artifact, ctx)
    return router if head is None else length_head.LengthHeaded(router, head)
