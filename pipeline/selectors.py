"""Reads for the pipeline app, always starting from the user.

Models and jobs are curator/model-team business: vendor users see none of them. Predictions
are visible wherever the image is (curation.selectors.images_visible_to).
"""
from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from common.fields import unstorable_char
from common.roles import can_read_all_data
from curation.selectors import images_visible_to

from .evaluation import UNCATEGORISED
from .models import (
    EvaluationRun,
    EvaluationSample,
    ModelVersion,
    Prediction,
    PrelabelItem,
    PrelabelJob,
    Webhook,
    WebhookDelivery,
)


def model_versions_visible_to(user: User) -> QuerySet[ModelVersion]:
    """Model versions: curators and model teams."""
    if can_read_all_data(user):
        return ModelVersion.objects.prefetch_related("training_licences").select_related("created_by")
    return ModelVersion.objects.none()


def prelabel_jobs_listed_to(user: User) -> QuerySet[PrelabelJob]:
    """The jobs `user` may see, without their progress counts: what a list picks its page from
    (by the jobs' own columns and indexes), before reading that page's jobs with
    :func:`prelabel_jobs_with_progress`."""
    if not can_read_all_data(user):
        return PrelabelJob.objects.none()
    return PrelabelJob.objects.all()


def prelabel_jobs_visible_to(user: User) -> QuerySet[PrelabelJob]:
    """Jobs with their progress counts aggregated in SQL (one query for a page of jobs).

    The counts group the jobs' items: a list must not page on this queryset (each page would
    group the items of every job before its LIMIT), but pick its page among
    :func:`prelabel_jobs_listed_to` and read it with :func:`prelabel_jobs_with_progress`."""
    return prelabel_jobs_listed_to(user).select_related("spec", "detector_version", "recognizer_version").annotate(
        n_done=Count("items", filter=Q(items__status=PrelabelItem.Status.DONE)),
        n_skipped=Count("items", filter=Q(items__status=PrelabelItem.Status.SKIPPED)),
        n_failed=Count("items", filter=Q(items__status=PrelabelItem.Status.FAILED)),
        n_items=Count("items"),
    )


def prelabel_jobs_with_progress(user: User, ids: list[int]) -> list[PrelabelJob]:
    """The jobs of `ids` that `user` may see, in that order, with their progress counts: one query,
    grouping only these jobs' items."""
    found = prelabel_jobs_visible_to(user).in_bulk(ids)
    return [found[pk] for pk in ids if pk in found]


def predictions_visible_to(user: User) -> QuerySet[Prediction]:
    """Predictions of the images `user` may see."""
    return Prediction.objects.filter(image__in=images_visible_to(user).values("pk")).select_related(
        "detector_version", "recognizer_version")


def prelabel_job_progress(job: PrelabelJob) -> dict:
    """done/skipped/failed/pending/total and an ETA from the rate so far (seconds, or None).

    The total is the job's items: an image deleted while (or after) the job ran takes its item
    with it, and a finished job must not go on showing it as pending.
    """
    if hasattr(job, "n_done"):
        done, skipped, failed, total = job.n_done, job.n_skipped, job.n_failed, job.n_items
    else:
        counts = dict(job.items.order_by().values_list("status").annotate(n=Count("id")))
        done, skipped, failed = (counts.get(s, 0) for s in ("done", "skipped", "failed"))
        total = sum(counts.values())
    finished = done + skipped + failed
    pending = max(total - finished, 0)
    eta = None
    if job.status == PrelabelJob.Status.RUNNING and job.started_at and finished and pending:
        elapsed = (timezone.now() - job.started_at).total_seconds()
        eta = round(elapsed / finished * pending, 1)
    return {"total": total, "done": done, "skipped": skipped, "failed": failed, "pending": pending,
            "finished": finished, "eta_seconds": eta}


def prelabel_job_failures(job: PrelabelJob) -> QuerySet[PrelabelItem]:
    return job.items.filter(status=PrelabelItem.Status.FAILED).order_by("image_id")


def prelabel_jobs_first_failures(job_ids: list[int], *, per_job: int) -> dict[int, list[PrelabelItem]]:
    """The first `per_job` failed items (by image) of each of the jobs, in one query: the jobs
    page shows them under each job (a query per job would grow with the page)."""
    from django.db.models import Window
    from django.db.models.functions import RowNumber

    out: dict[int, list[PrelabelItem]] = {}
    if not job_ids:
        return out
    rows = (PrelabelItem.objects.filter(job_id__in=job_ids, status=PrelabelItem.Status.FAILED)
            .annotate(n=Window(RowNumber(), partition_by=F("job_id"), order_by=F("image_id").asc()))
            .filter(n__lte=per_job).order_by("job_id", "image_id"))
    for item in rows:
        out.setdefault(item.job_id, []).append(item)
    return out


def evaluation_runs_visible_to(user: User) -> QuerySet[EvaluationRun]:
    """Offline evaluations: curators and model teams; vendor users see none (they hold no
    snapshot either)."""
    if not can_read_all_data(user):
        return EvaluationRun.objects.none()
    return EvaluationRun.objects.select_related("snapshot__spec", "detector_version", "recognizer_version",
                                                "created_by")


def evaluation_samples_worst_first(run: EvaluationRun, *, category: str | None = None) -> QuerySet[EvaluationSample]:
    """A run's samples, worst first: largest token edit distance, then missed or poorly
    matched detections (samples without a reading sort after those with one).

    `category` keeps the samples of images in that category, whichever of the image's
    categories it is; ``"uncategorised"`` (the name the per-category figures give them) also
    keeps those of images without any."""
    qs = EvaluationSample.objects.filter(run=run).select_related("item")
    if category and unstorable_char(category) is not None:  # no category holds one; jsonb cannot compare it
        return qs.none()
    if category:
        wanted = Q(categories__has_item=category)
        if category == UNCATEGORISED:
            wanted |= Q(categories=[])
        qs = qs.filter(wanted)
    return qs.order_by(F("edit_distance").desc(nulls_last=True), F("iou").asc(nulls_first=True), "id")


def qa_reports_visible_to(user: User) -> QuerySet:
    """QA reports: curators only. A report names every vendor's annotators and holds prices, so
    vendor users (and model teams, who see no prices) are refused rather than given a slice."""
    from common.roles import is_curator

    from .models import QAReport

    if is_curator(user):
        return QAReport.objects.select_related("spec")
    return QAReport.objects.none()


def webhooks_visible_to(user: User) -> QuerySet[Webhook]:
    """A user's own webhooks, to curators too: a webhook is its owner's tooling (where their
    pipeline listens), and nobody else has a reason to read or change it. Vendor people own none."""
    from .webhooks import may_own_webhooks

    if not getattr(user, "is_authenticated", False) or not may_own_webhooks(user):
        return Webhook.objects.none()
    return Webhook.objects.filter(owner=user)


def webhook_deliveries_of(webhook: Webhook) -> QuerySet[WebhookDelivery]:
    """The deliveries of one webhook (already visible to the user), newest first."""
    return WebhookDelivery.objects.filter(webhook=webhook).order_by("-created_at", "-id")
