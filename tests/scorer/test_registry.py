"""The one registry of router kinds (scorer.routers.ROUTERS) and the lists derived from it."""

from __future__ import annotations

from pathlib import Path

from ferryman.scorer.v1 import scorer_pb2
from harness.scorer import TEST_ROUTERS
from scorer.artifacts import load_artifact
from scorer.routers import ROUTER_KINDS, ROUTERS
from scorer.server import router_type


def test_router_type_is_the_proto_enum_value_of_the_same_name() -> None:
    names = scorer_pb2.RouterType.keys()
    for kind in ROUTERS:
        name = f"ROUTER_TYPE_{kind.upper()}"
        expected = scorer_pb2.RouterType.Value(name) if name in names else scorer_pb2.ROUTER_TYPE_UNSPECIFIED
        assert router_type(kind) == expected
    for kind in ("mf", "bert", "sw", "random"):  # the kinds the proto names
        assert router_type(kind) != scorer_pb2.ROUTER_TYPE_UNSPECIFIED
    assert router_type("a-kind-the-proto-lacks") == scorer_pb2.ROUTER_TYPE_UNSPECIFIED


def test_test_routers_cover_every_kind(test_routers_dir: Path) -> None:
    assert TEST_ROUTERS == ROUTER_KINDS == tuple(ROUTERS)
    for kind in ROUTER_KINDS:
        manifest = load_artifact(test_routers_dir / kind).manifest
        assert manifest.kind == kind and manifest.calibration is not None
