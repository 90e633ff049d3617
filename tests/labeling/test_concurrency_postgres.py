"""The work queue and optimistic concurrency under real concurrency (threads on
PostgreSQL, each with its own connection)."""
from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count, Q

from common import roles
from labeling import services
from labeling.models import Annotation, AnnotationVersion, Claim, Task
from tests import factories
from tests.factories import quad

pytestmark = [
    pytest.mark.postgres,
    # Real commits between threads; the catalogue and role rows of data migrations come back after each test.
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
                       reason="needs PostgreSQL (row locks, concurrent connections): set DATABASE_URL"),
]


def run_threads(n: int, target) -> list:
    """Run target(i) in n threads released together; return results or exceptions."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def wrap(i):
        try:
            barrier.wait()
            results[i] = target(i)
        except Exception as exc:  # reported by the test
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@pytest.fixture
def fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_many_annotators_claiming_at_once_never_exceed_overlap(fast_hashing):
    vendor = factories.make_vendor()
    batch = factories.make_batch(factories.make_spec(), vendor, images=6, overlap=2)
    annotators = [factories.make_user(roles.ANNOTATOR, vendor=vendor) for _ in range(16)]

    def work(i):
        done = []
        annotator = annotators[i]
        while True:
            result = services.task_claim_next(annotator=annotator)
            if result.task is None:
                return done
            services.annotation_create(task=result.task, annotator=annotator, regions=[quad()], submit=True)
            done.append(result.task.id)

    results = run_threads(len(annotators), work)
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    per_task = Counter(t for r in results for t in r)
    assert sorted(per_task) == sorted(batch.tasks.values_list("id", flat=True))
    assert set(per_task.values()) == {2}  # every task exactly `overlap` times, never more
    for r in results:
        assert len(r) == len(set(r))  # nobody got a task twice
    over = Task.objects.annotate(n=Count("claims", filter=Q(claims__state__in=["live", "annotated"]))).filter(
        n__gt=2)
    assert not over.exists()
    assert set(Task.objects.filter(batch=batch).values_list("status", "slots_taken")) == {("submitted", 2)}


def test_simultaneous_claims_of_the_last_slot_go_to_one_annotator(fast_hashing):
    vendor = factories.make_vendor()
    factories.make_batch(factories.make_spec(), vendor, images=1, overlap=1)
    annotators = [factories.make_user(roles.ANNOTATOR, vendor=vendor) for _ in range(12)]
    results = run_threads(12, lambda i: services.task_claim_next(annotator=annotators[i]).task)
    assert not [r for r in results if isinstance(r, Exception)]
    assert sum(r is not None for r in results) == 1
    assert Claim.objects.count() == 1


def test_concurrent_saves_of_one_version_one_wins_none_lost(fast_hashing):
    vendor = factories.make_vendor()
    factories.make_batch(factories.make_spec(), vendor, images=1)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    task = services.task_claim_next(annotator=annotator).task
    ann = services.annotation_create(task=task, annotator=annotator, regions=[quad(latex="v1")])

    def save(i):
        fresh = Annotation.objects.get(pk=ann.pk)
        try:
            services.annotation_update(annotation=fresh, by=annotator, version=1, regions=[quad(latex=f"t{i}")])
            return "won"
        except services.StaleVersion as exc:
            return exc.current.version

    results = run_threads(10, save)
    assert results.count("won") == 1
    assert all(r == 2 for r in results if r != "won")
    assert AnnotationVersion.objects.filter(annotation=ann).count() == 2

    # Clients that retry on 409 from the version they are told: every change lands.
    def retrying(i):
        while True:
            fresh = Annotation.objects.get(pk=ann.pk)
            try:
                services.annotation_update(annotation=fresh, by=annotator, version=fresh.version,
                                           regions=[quad(latex=f"r{i}")])
                return True
            except services.StaleVersion:
                continue

    assert all(r is True for r in run_threads(8, retrying))
    ann.refresh_from_db()
    assert ann.version == 10
    latex = list(AnnotationVersion.objects.filter(annotation=ann).order_by("number")
                 .values_list("regions__latex", flat=True))
    assert sorted(latex[2:]) == sorted(f"r{i}" for i in range(8))
    assert list(AnnotationVersion.objects.filter(annotation=ann).values_list("number", flat=True)) == list(range(1, 11))
