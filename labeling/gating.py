"""Hooks that may keep an annotator from taking work from a batch.

`guide_acknowledgement_missing`: an annotator must acknowledge the current
published version of a batch's work guide before the queue gives them a task
from it; a new version asks again. `labeling.services.task_claim_next` calls it
for every active batch, and `tasks/next/` reports the returned messages.
"""
from __future__ import annotations

from django.contrib.auth.models import User

from .models import Batch


def guide_acknowledgement_missing(*, annotator: User, batch: Batch) -> str | None:
    """None when `annotator` may take tasks from `batch`; otherwise why not, for a person."""
    from django.urls import reverse

    from guides.selectors import guide_acknowledgement_required

    version = guide_acknowledgement_required(user=annotator, spec=batch.spec)
    if version is None:
        return None
    url = reverse("guides:detail", kwargs={"pk": version.guide_id})
    return (f"Read and acknowledge version {version.number} of the work guide for {batch.spec.name} "
            f"before taking tasks from batch {batch.name}: {url}")
