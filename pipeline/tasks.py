"""Celery tasks for pre-labeling: thin, idempotent, ids in."""
from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError

from . import services


@shared_task(bind=True, acks_late=True, max_retries=3, default_retry_delay=5, reject_on_worker_lost=True)
def prelabel_chunk(self, job_id: int, image_ids: list[int]) -> dict:
    """Pre-label one chunk of a job's images. Safe to run twice: done items are skipped.

    Per-image errors are recorded by the service; what escapes it (database or model-loading
    trouble) is retried, and a worker killed mid-chunk gets the chunk redelivered (acks_late).
    """
    try:
        return services.prelabel_chunk_run(job_id=job_id, image_ids=image_ids)
    except (DatabaseError, OSError) as exc:
        raise self.retry(exc=exc)


@shared_task(acks_late=True)
def prelabel_sweep() -> list[int]:
    """Periodic (Celery beat): resume running jobs whose workers stopped making progress."""
    return services.prelabel_jobs_sweep()


# An evaluation is one long task (its batches share the timing); the default limit is for chunks.


@shared_task(acks_late=True, soft_time_limit=6 * 3600, time_limit=6 * 3600 + 60)
def run_evaluation(run_id: int) -> None:
    """Run a queued offline evaluation. Safe to run twice: only a queued run is claimed."""
    from .evaluation import evaluation_run
    from .models import EvaluationRun

    run = EvaluationRun.objects.filter(pk=run_id, status=EvaluationRun.Status.QUEUED).first()
    if run is None:  # cancelled, or another delivery already runs it
        return
    evaluation_run(run=run)


@shared_task(acks_late=True)
def evaluations_sweep() -> dict:
    """Periodic (Celery beat): re-queue or fail evaluation runs whose worker died."""
    from .evaluation import evaluations_sweep as sweep

    return sweep()


@shared_task(acks_late=True)
def spec_stats_refresh(spec_id: int) -> int | None:
    """Compute and store a spec's quota progress and QA statistics (debounced by pipeline.refresh);
    the id of the QA report.

    The pending marker is cleared first, so a submit that arrives while this runs schedules the
    next computation instead of being lost.
    """
    from django.core.cache import cache

    from curation.models import DatasetSpec

    from .refresh import pending_key
    from .stats import spec_reports_refresh

    cache.delete(pending_key(spec_id))
    spec = DatasetSpec.objects.filter(pk=spec_id).first()
    if spec is None:  # deleted meanwhile
        return None
    return spec_reports_refresh(spec=spec).pk


@shared_task(acks_late=True)
def spec_stats_refresh_active() -> list[int]:
    """Periodic (Celery beat): refresh the statistics of active specs with new reviews or submits
    since their latest report, or whose progress is over an hour old (covers a debounce whose
    transaction rolled back or whose message was lost)."""
    from .stats import specs_needing_stats

    ids = specs_needing_stats()
    for spec_id in ids:
        spec_stats_refresh.delay(spec_id)
    return ids


# A delivery's tries are counted on its row (the service decides whether one more is due and
# when, from the MATHSET_WEBHOOK_* settings), not by Celery's retry counter: a message redelivered
# after a worker died, or a manual resend, must not get a fresh allowance.


@shared_task(bind=True, acks_late=True, max_retries=None)
def webhook_deliver(self, delivery_id: int) -> str | None:
    """POST one webhook delivery; its status afterwards. Safe to run twice: only a pending
    delivery is sent, and one being sent by another worker is skipped."""
    from .webhooks import webhook_delivery_attempt

    outcome = webhook_delivery_attempt(delivery_id=delivery_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.delivery.status if outcome.delivery is not None else None


@shared_task(acks_late=True)
def webhook_deliveries_sweep() -> list[int]:
    """Periodic (Celery beat): send again the pending webhook deliveries whose message was lost."""
    from .webhooks import webhook_deliveries_resend_stale

    return webhook_deliveries_resend_stale()
