"""Hooks that may keep an annotator from taking work from a batch.

`guide_acknowledgement_missing` is the seam for the guides app (issue 7): an
annotator must acknowledge the current version of a batch's work guide before the
queue gives them a task from it. Until guides exist it lets everybody through.
The guides engineer replaces the body with a call to `guides.selectors`, keeping
the signature; `labeling.services.task_claim_next` already calls it for every
active batch, and `tasks/next/` reports the returned messages.
"""
from __future__ import annotations

from django.contrib.auth.models import User

from .models import Batch


def guide_acknowledgement_missing(*, annotator: User, batch: Batch) -> str | None:
    """None when `annotator` may take tasks from `batch`; otherwise why not, for a person."""
    return None
