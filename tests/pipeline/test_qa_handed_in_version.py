"""Gold accuracy and agreement score what an annotator handed in: a rejected answer's rework
draft (saved, not handed in again) used to be scored in its place."""
from __future__ import annotations

import pytest

from common import roles
from labeling import services as ls
from pipeline.stats import spec_stats_compute
from tests import factories
from tests.factories import quad

pytestmark = pytest.mark.django_db


def test_gold_scores_the_rejected_version_not_the_rework_draft():
    vendor, spec = factories.make_vendor(), factories.make_spec()
    batch = factories.make_batch(spec, vendor, images=1)
    task = batch.tasks.get()
    ls.task_set_gold(task=task, answer={"regions": [quad(latex="x^{2}+1")]})
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    claimed = ls.task_claim_next(annotator=annotator).task
    annotation = ls.annotation_create(task=claimed, annotator=annotator, submit=True, regions=[quad(latex="x^{2}+1")])
    ls.review_create(annotation=annotation, reviewer=reviewer, decision="reject", reasons=["guide_violation"])
    annotation.refresh_from_db()
    # rework begun: a draft with a wrong formula, not handed in
    ls.annotation_update(annotation=annotation, by=annotator, version=annotation.version,
                         regions=[quad(latex="y")])
    gold = spec_stats_compute(spec=spec).payload["gold"]
    assert gold["items"] == 1
    assert gold["overall"]["latex_exact_match"] == 1.0  # the handed-in answer, which was right
