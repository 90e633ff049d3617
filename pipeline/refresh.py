"""The debounced trigger for quota progress and QA statistics, called from every write path that
changes them: images (collected), batches (tasks), pre-labels, annotations and reviews, snapshots
(splits).

Kept free of heavy imports and of database queries: the submit path registers one ``on_commit``
callback, which pays one cache ``add`` (atomic: only the first caller in a window succeeds) and, for
that caller alone, schedules the recomputation ``DEBOUNCE_SECONDS`` later. Every submit and review
in the window is therefore covered by a single computation.

The marker is taken after the commit, not before: a write that is rolled back (a page submit
undone because another of its fields was refused) then takes no marker, so the next write that
does commit within the minute still schedules its refresh.
"""
from __future__ import annotations

import logging

from django.core.cache import cache
from django.db import transaction

DEBOUNCE_SECONDS = 60

logger = logging.getLogger(__name__)


def pending_key(spec_id: int) -> str:
    return f"stats-pending:{spec_id}"


def spec_stats_refresh_soon(*, spec_id: int) -> None:
    """Once the current transaction commits, schedule one computation of `spec_id`'s quota progress
    and QA statistics unless one is already pending."""
    transaction.on_commit(lambda: _schedule_once(spec_id))


def _schedule_once(spec_id: int) -> None:
    if cache.add(pending_key(spec_id), 1, timeout=DEBOUNCE_SECONDS):
        _schedule(spec_id)


def _schedule(spec_id: int) -> None:
    # Runs after the submit or review has committed: a broker that is down must not turn that
    # saved work into a 500. The marker is dropped so the next write tries again, and the hourly
    # beat sweep (spec_stats_refresh_active) catches up meanwhile.
    from .tasks import spec_stats_refresh

    try:
        spec_stats_refresh.apply_async((spec_id,), countdown=DEBOUNCE_SECONDS)
    except Exception:
        cache.delete(pending_key(spec_id))
        logger.exception("Could not schedule the QA statistics of spec %s", spec_id)
