"""Celery tasks of curation: thin, idempotent, ids in."""
from celery import shared_task

from .models import ImportJob
from .services import import_job_run


@shared_task(bind=True, acks_late=True)
def run_import_job(self, job_id: int) -> None:
    """Ingest a queued zip. Returns quietly if the job is gone or already taken.

    A message delivered again (acks_late: the worker running it died) takes over its
    job still marked ``running``, and goes on after the files already recorded;
    otherwise the job would stay ``running`` for ever.
    """
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    statuses = [ImportJob.Status.QUEUED] + ([ImportJob.Status.RUNNING] if redelivered else [])
    job = ImportJob.objects.filter(id=job_id, status__in=statuses).first()
    if job is None:
        return
    import_job_run(job=job, resume=redelivered)


@shared_task(acks_late=True)
def run_export(export_id: int) -> None:
    """Build a queued export. Returns quietly if the export is gone or already taken."""
    from .models import Export
    from .snapshots import export_run

    job = Export.objects.filter(id=export_id, status=Export.Status.QUEUED).first()
    if job is None:
        return
    export_run(job=job)


@shared_task(acks_late=True)
def build_snapshot(snapshot_id: int) -> None:
    """Freeze a queued snapshot. Returns quietly if it is gone or already taken."""
    from .models import Snapshot
    from .snapshots import snapshot_build

    snapshot = Snapshot.objects.filter(id=snapshot_id, status=Snapshot.Status.QUEUED).first()
    if snapshot is None:
        return
    snapshot_build(snapshot=snapshot)


@shared_task
def sweep_builds() -> dict:
    """Periodic (Celery beat): re-queue or fail exports and snapshots whose worker died."""
    from dataclasses import asdict

    from .snapshots import builds_sweep

    return asdict(builds_sweep())
