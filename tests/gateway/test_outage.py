"""gateway.outage: the down window shared by the Redis and learning-store guards."""

from __future__ import annotations

import time

from gateway.outage import Outage


def test_one_start_and_one_end_per_outage_and_a_down_window() -> None:
    outage = Outage(retry_s=0.2)
    assert outage.usable() and outage.remaining() == 0.0
    assert outage.succeeded() is False  # no outage to end
    assert outage.failed() is True  # starts one: the caller logs it
    assert not outage.usable() and 0.0 < outage.remaining() <= 0.2
    assert outage.failed() is False  # still the same outage: no second log line
    time.sleep(0.25)
    assert outage.usable()  # the window passed: the next call may try again
    assert outage.succeeded() is True  # ends it: the caller logs the recovery
    assert outage.succeeded() is False


def test_extend_never_shortens_the_window() -> None:
    outage = Outage(retry_s=10.0)
    outage.failed()
    outage.extend(0.01)
    assert outage.remaining() > 9.0
    fresh = Outage(retry_s=10.0)
    fresh.extend(0.5)
    assert not fresh.usable() and fresh.remaining() <= 0.5
