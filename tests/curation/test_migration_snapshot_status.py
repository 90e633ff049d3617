"""Snapshots built before builds moved to Celery come out of the migration ready, with summaries."""
from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from curation.models import Snapshot
from tests import factories
from tests.curation.test_snapshots import accepted_spec

# serialized_rollback, as the other transactional tests: a plain flush re-creates content types that a
# later serialized_rollback test (the real-worker ones) would then insert twice.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

BEFORE = [("curation", "0003_snapshots_exports")]
AFTER = [("curation", "0004_snapshot_build_status")]


def migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def test_existing_snapshots_become_ready_with_their_category_and_licence_counts(curator):
    snap = factories.make_snapshot(spec=accepted_spec(images=3), name="old", created_by=curator, ratios=(1, 0, 0))
    built = Snapshot.objects.values("category_counts", "licence_counts", "commercial_items").get(pk=snap.pk)
    try:
        migrate(BEFORE)
        migrate(AFTER)
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    after = Snapshot.objects.get(pk=snap.pk)
    assert after.status == Snapshot.Status.READY and after.finished_at == after.created_at
    assert after.category_counts == built["category_counts"] == {"printed": {"train": 3, "validation": 0, "test": 0}}
    assert after.licence_counts == built["licence_counts"] and after.commercial_items == 3
    assert after.content_hash == snap.content_hash and after.items.count() == 3
