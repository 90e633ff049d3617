"""Batches made before their history was kept start it at their making (migration labeling.0007)."""
from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from labeling.models import Batch, BatchEvent
from tests import factories

# serialized_rollback, as the other transactional tests: a plain flush re-creates content types that a
# later serialized_rollback test (the real-worker ones) would then insert twice.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def test_a_batch_from_before_the_history_gets_a_created_event_at_its_making(curator, spec, vendor):
    old = factories.make_batch(spec, vendor, images=1, created_by=curator)
    new = factories.make_batch(spec, vendor, images=1, created_by=curator)
    made = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
    Batch.objects.filter(pk=old.pk).update(created_at=made)
    try:
        migrate([("labeling", "0006_batch_history")])
        BatchEvent.objects.filter(batch=old).delete()     # as it was before histories were kept
        migrate([("labeling", "0007_batch_history_backfill")])
        (event,) = BatchEvent.objects.filter(batch=old)
        assert (event.kind, event.by, event.at, event.changes) == ("created", curator, made, {})
        assert "before batch history was kept" in event.reason
        assert list(BatchEvent.objects.filter(batch=new).values_list("kind", "reason")) == [("created", "")]
        migrate([("labeling", "0006_batch_history")])     # and back: only the backfilled events go
        assert not BatchEvent.objects.filter(batch=old).exists()
        assert BatchEvent.objects.filter(batch=new).count() == 1
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
