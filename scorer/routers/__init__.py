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

from scorer.artifacts import FULL_LAYERS, MANIFEST_NAME, Artifact
from scorer.errors import ArtifactError
from scorer.routers import length_head
from scorer.routers.base import LoadContext, Router
from scorer.routers.bert import BertRouter
from scorer.routers.mf import MFRouter
from scorer.routers.random import RandomRouter
from scorer.routers.sw import SWRouter

__all__ = ["ROUTERS", "ROUTER_KINDS", "LoadContext", "Router", "embeds_prompts", "load_router", "truncation_refused"]

ROUTERS: dict[str, Callable[[Artifact, LoadContext], Router]] = {
    "mf": MFRouter,
    "sw": SWRouter,
    "bert": BertRouter,
    "random": RandomRouter,
}
ROUTER_KINDS: tuple[str, ...] = tuple(ROUTERS)


def embeds_prompts(kind: str) -> bool:
    """Whether routers of ``kind`` score the shared encoder's embeddings (``Router.needs_embeddings``): only
    those can be trained and served on a truncated encoder (``EncoderSpec.layers``); a BERT router runs its own
    full-depth graph, a random one no encoder."""
    return bool(getattr(ROUTERS[kind], "needs_embeddings", False))


def truncation_refused(kind: str) -> str | None:
    """Why a ``kind`` router cannot have a truncated encoder (``EncoderSpec.layers`` < 6); None when it can."""
    if embeds_prompts(kind):
        return None
    can = ", ".join(k for k in ROUTER_KINDS if embeds_prompts(k))
    return (
        f"a {kind} router cannot use a truncated encoder (only {can}, which score the shared encoder's embeddings,"
        " can; a bert router runs its own full-depth graph, a random one no encoder)"
    )


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
    encoder = artifact.manifest.encoder
    if encoder is not None and encoder.layers != FULL_LAYERS and (why := truncation_refused(kind)):
        # was: a bert artifact loaded and served at full depth, while ListRouters said "first N of 6 layers"
        raise ArtifactError(f"{where}: encoder.layers {encoder.layers}: {why}")
    head = length_head.parse(artifact.manifest.params, where)
    router = loader(artifact, ctx)
    return router if head is None else length_head.LengthHeaded(router, head)
