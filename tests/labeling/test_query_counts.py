"""List endpoints run a fixed number of queries, however many rows they return."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from common import roles
from labeling import services
from tests import factories
from tests.factories import quad
from tests.labeling.conftest import client_for

pytestmark = pytest.mark.django_db

LISTS = ["/api/v1/batches/", "/api/v1/tasks/", "/api/v1/annotations/", "/api/v1/annotations/review-queue/",
         "/api/v1/reviews/", "/api/v1/predictions/", "/api/v1/vendors/"]


def grow(vendor, spec, n: int):
    """n more tasks, each annotated (3 regions), submitted, half reviewed, with a prediction."""
    batch = factories.make_batch(spec, vendor, images=n)
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    for i in range(n):
        annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
        task = services.task_claim_next(annotator=annotator).task
        services.predictions_import(model_name="m", model_version=str(batch.id),
                                    items=[{"image": task.image_id, "regions": [quad()], "confidence": 0.5}])
        ann = services.annotation_create(task=task, annotator=annotator, submit=True,
                                         regions=[quad(), quad(100, 50, 150, 90), quad(20, 50, 60, 90)])
        if i % 2:
            services.review_create(annotation=ann, reviewer=reviewer, decision="reject", reasons=["other"],
                                   comment="see guide")
    return reviewer


def count(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        r = client.get(url)
    assert r.status_code == 200, (url, r.content[:200])
    return len(ctx.captured_queries)


def test_list_query_counts_do_not_grow_with_rows(vendor, spec, django_assert_max_num_queries):
    reviewer = grow(vendor, spec, 2)
    users = [factories.make_user(roles.CURATOR), reviewer]
    small = {(u.pk, url): count(client_for(u), url) for u in users for url in LISTS}
    grow(vendor, spec, 5)
    for user in users:
        for url in LISTS:
            with django_assert_max_num_queries(small[(user.pk, url)]):
                r = client_for(user).get(url)  # a fresh client: no per-user cache carried over
            assert r.json()["count"] >= 1, url
    assert max(small.values()) <= 8


def test_history_and_members_query_counts_are_fixed(vendor, spec, django_assert_max_num_queries):
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    factories.make_batch(spec, vendor, images=1)
    task = services.task_claim_next(annotator=annotator).task
    ann = services.annotation_create(task=task, annotator=annotator, regions=[quad()])
    client = client_for(annotator)
    url = f"/api/v1/annotations/{ann.id}/history/"
    small = count(client, url)
    for v in range(1, 8):
        services.annotation_update(annotation=ann, by=annotator, version=v, regions=[quad(), quad(100, 50, 150, 90)])
    with django_assert_max_num_queries(small):
        assert len(client_for(annotator).get(url).json()["results"]) == 8
    members = f"/api/v1/vendors/{vendor.id}/members/"
    small = count(client_for(annotator), members)
    for _ in range(5):
        factories.make_user(roles.REVIEWER, vendor=vendor)
    with django_assert_max_num_queries(small):
        client_for(annotator).get(members)
