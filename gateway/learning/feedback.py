"""Explicit feedback: an application rates an answer it got, by the response id Ferryman returned.

Served over HTTP (``POST /v1/feedback``) and gRPC (``GatewayService.SubmitFeedback``), both thin
adapters over :meth:`Feedback.submit`. A rating is ``good`` or ``bad``; the latest one wins. Only
answers that were recorded can be rated (answers of a learning policy, with ``feedback.enabled``,
within the retention time, of a tenant that has not opted out), and only by the tenant (client
key) that got them: any other id is *not found* (404 / NOT_FOUND), as an unknown one is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from gateway.errors import InvalidRequestError, NotFoundError, StoreUnavailableError
from gateway.learning.guard import GuardedStore
from gateway.learning.metrics import LearningMetrics
from gateway.learning.records import Rating
from gateway.learning.store import StoreError

#: Response ids are ``chatcmpl-`` + 24 hex digits; anything much longer is not one of ours.
MAX_ID_CHARS = 128
#: Feedback on an answer whose record the worker has not written yet waits this long at most
#: (normally milliseconds; longer only while the worker starts or the store is slow).
PENDING_WAIT_S = 10.0


#: A front end's reader of one request's (id, rating), called by :meth:`Learning.submit_feedback` so
#: that a body it refuses (not JSON, not an object, unknown fields) is counted like a bad rating:
#: InvalidRequestError for anything that is not a feedback request.
FeedbackReader = Callable[[], tuple[object, object]]


def parse_rating(value: object) -> Rating:
    """``good`` / ``bad`` (case-insensitive), else InvalidRequestError."""
    allowed = ", ".join(repr(r.value) for r in Rating)
    if value is None:
        raise InvalidRequestError(f"rating is required: one of {allowed}", param="rating")
    if isinstance(value, str):
        try:
            return Rating(value.strip().lower())
        except ValueError:
            pass
    raise InvalidRequestError(f"rating must be one of {allowed}, got {value!r}"[:200], param="rating")


def check_response_id(value: object) -> str:
    if value is None:
        raise InvalidRequestError("id is required: the response id a completion returned", param="id")
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequestError("id must be the response id a completion returned", param="id")
    if len(value) > MAX_ID_CHARS:
        raise InvalidRequestError(f"id is longer than {MAX_ID_CHARS} characters", param="id")
    return value.strip()


class Feedback:
    """Writes ratings to the store on behalf of the front ends."""

    def __init__(
        self, store: GuardedStore, metrics: LearningMetrics, pending: Callable[[str], asyncio.Future[None] | None]
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._pending = pending

    async def submit(self, tenant: str, response_id: str, rating: Rating) -> None:
        """Rate ``response_id``; NotFoundError or StoreUnavailableError (both counted) otherwise."""
        if not self._store.usable():
            self._metrics.feedback.labels("store_down").inc()
            raise StoreUnavailableError("the learning store is unavailable; try again later")
        write = self._pending(response_id)  # the answer's record may still be on its way to the store
        if write is not None:
            await asyncio.wait({write}, timeout=PENDING_WAIT_S)
        store = self._store.store
        try:
            found = await self._store.call(
                "rate", lambda: store.set_rating(response_id, tenant, rating.value, time.time())
            )
        except StoreError:
            self._metrics.feedback.labels("store_down").inc()
            raise StoreUnavailableError("the learning store is unavailable; try again later") from None
        if not found:
            self._metrics.feedback.labels("unknown_id").inc()
            raise NotFoundError(f"no recorded response with id {response_id!r}", param="id")
        self._metrics.feedback.labels(rating.value).inc()
