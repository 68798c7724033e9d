"""The one calibration rule (ferryman.calibration), on shared vectors, through every entry point.

The gateway turns a policy's target share into a threshold with ``CalibrationTable``
(tests/gateway/test_gateway_grpc.py checks a live decision against it); the lab reads
thresholds through ``scorer.artifacts.Calibration.threshold_for``. Both must give these answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from ferryman.calibration import CalibrationTable
from scorer.artifacts import Calibration, CalibrationPoint

Table = Sequence[tuple[float, float]]

# (points as a manifest may list them, share, expected threshold): the rule of docs/artifacts.md.
VECTORS: list[tuple[Table, float, float]] = [
    # on a point, between points, at both ends
    ([(0.0, 0.9), (0.25, 0.6), (0.5, 0.4), (1.0, 0.0)], 0.25, 0.6),
    ([(0.0, 0.9), (0.25, 0.6), (0.5, 0.4), (1.0, 0.0)], 0.3, 0.56),
    ([(0.0, 0.9), (0.25, 0.6), (0.5, 0.4), (1.0, 0.0)], 0.0, 0.9),
    ([(0.0, 0.9), (0.25, 0.6), (0.5, 0.4), (1.0, 0.0)], 1.0, 0.0),
    ([(0.0, 0.9), (0.25, 0.6), (0.5, 0.4), (1.0, 0.0)], 0.75, 0.2),
    # unsorted, with two points at share 0.5: on the tie the higher threshold wins, and each
    # side interpolates towards its own end of the tie
    ([(0.5, 0.4), (1.0, 0.0), (0.5, 0.6), (0.0, 0.9)], 0.5, 0.6),
    ([(0.5, 0.4), (1.0, 0.0), (0.5, 0.6), (0.0, 0.9)], 0.25, 0.75),
    ([(0.5, 0.4), (1.0, 0.0), (0.5, 0.6), (0.0, 0.9)], 0.75, 0.2),
    # a table that does not cover [0, 1]: the nearest end point's threshold outside it
    ([(0.2, 0.7), (0.8, 0.3)], 0.0, 0.7),
    ([(0.2, 0.7), (0.8, 0.3)], 1.0, 0.3),
    ([(0.2, 0.7), (0.8, 0.3)], 0.5, 0.5),
]


def _table(points: Table) -> Callable[[float], float]:
    return CalibrationTable(points).threshold_for


def _artifact(points: Table) -> Callable[[float], float]:
    return Calibration("vectors", tuple(CalibrationPoint(s, t) for s, t in points)).threshold_for


ENTRY_POINTS = {"ferryman.calibration (gateway)": _table, "scorer.artifacts.Calibration (lab)": _artifact}


@pytest.mark.parametrize("entry", ENTRY_POINTS.values(), ids=list(ENTRY_POINTS))
@pytest.mark.parametrize(("points", "share", "expected"), VECTORS)
def test_threshold_for_share(
    entry: Callable[[Table], Callable[[float], float]], points: Table, share: float, expected: float
) -> None:
    assert entry(points)(share) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("entry", ENTRY_POINTS.values(), ids=list(ENTRY_POINTS))
@pytest.mark.parametrize("share", [float("nan"), -0.1, 1.1])
def test_share_outside_0_1_is_refused(entry: Callable[[Table], Callable[[float], float]], share: float) -> None:
    with pytest.raises(ValueError, match=r"strong_share must be in \[0, 1\]"):
        entry([(0.0, 0.9), (1.0, 0.0)])(share)


def test_empty_table_is_refused() -> None:
    with pytest.raises(ValueError, match="empty calibration table"):
        CalibrationTable([])
