"""QA statistics after an annotator is switched off and their unfinished work withdrawn
(labeling.services.member_work_release): a withdrawn rework was handed in and is scored as the
answer its review rejected; a withdrawn draft never was, and counts nowhere, like a draft."""
from __future__ import annotations

import pytest

from common import roles
from common.services import user_deactivate
from labeling import services as ls
from labeling.models import Annotation
from pipeline.stats import spec_stats_compute
from tests import factories
from tests.factories import quad

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    vendor, spec = factories.make_vendor(), factories.make_spec()
    batch = factories.make_batch(spec, vendor, images=1)
    task = batch.tasks.get()
    ls.task_set_gold(task=task, answer={"regions": [quad(latex="x^{2}+1")]})
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    curator = factories.make_user(roles.CURATOR)
    return spec, annotator, reviewer, curator


def test_a_withdrawn_rework_is_scored_as_the_answer_its_review_rejected(world):
    spec, annotator, reviewer, curator = world
    claimed = ls.task_claim_next(annotator=annotator).task
    annotation = ls.annotation_create(task=claimed, annotator=annotator, submit=True, regions=[quad(latex="x^{2}+1")])
    ls.review_create(annotation=annotation, reviewer=reviewer, decision="reject", reasons=["guide_violation"])
    annotation.refresh_from_db()
    ls.annotation_update(annotation=annotation, by=annotator, version=annotation.version, regions=[quad(latex="y")])
    user_deactivate(user=annotator, by=curator)
    assert Annotation.objects.get(pk=annotation.pk).status == Annotation.Status.WITHDRAWN
    payload = spec_stats_compute(spec=spec).payload
    assert payload["gold"]["items"] == 1
    assert payload["gold"]["overall"]["latex_exact_match"] == 1.0  # handed in right, not the "y" draft
    assert payload["throughput"]["overall"]["annotations"] == 1


def test_a_withdrawn_draft_counts_nowhere(world):
    spec, annotator, _, curator = world
    claimed = ls.task_claim_next(annotator=annotator).task
    ls.annotation_create(task=claimed, annotator=annotator, submit=False, regions=[quad(latex="y")])
    user_deactivate(user=annotator, by=curator)
    payload = spec_stats_compute(spec=spec).payload
    # Before, only "draft" was left out: the withdrawn draft was scored as a wrong gold answer.
    assert payload["gold"]["items"] == 0
    assert payload["throughput"]["overall"]["annotations"] == 0
