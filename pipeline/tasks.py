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
