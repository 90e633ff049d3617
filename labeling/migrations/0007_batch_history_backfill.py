"""Batches made before their history was kept get a "created" event at their making, by their
maker, with no values (what they were made with was not recorded) and a reason saying so: the
history of every batch then starts at its making, and a later "reopened" is never the first word."""

from django.db import migrations

BEFORE = "Made before batch history was kept: its values then, and its changes until now, were not recorded."


def backfill(apps, schema_editor):
    Batch = apps.get_model("labeling", "Batch")
    BatchEvent = apps.get_model("labeling", "BatchEvent")
    # Read whole before writing: the events written would move the rows of a query re-run per chunk.
    missing = list(Batch.objects.exclude(events__kind="created").order_by("pk")
                   .values_list("pk", "created_by_id", "created_at"))
    for chunk_start in range(0, len(missing), 1000):
        rows = missing[chunk_start:chunk_start + 1000]
        made = BatchEvent.objects.bulk_create(
            [BatchEvent(batch_id=pk, by_id=by, kind="created", changes={}, reason=BEFORE) for pk, by, _ in rows])
        for event, (_, _, at) in zip(made, rows, strict=True):  # auto_now_add stamped them now
            BatchEvent.objects.filter(pk=event.pk).update(at=at)


def unfill(apps, schema_editor):
    apps.get_model("labeling", "BatchEvent").objects.filter(kind="created", reason=BEFORE).delete()


class Migration(migrations.Migration):

    dependencies = [("labeling", "0006_batch_history")]

    operations = [migrations.RunPython(backfill, unfill)]
