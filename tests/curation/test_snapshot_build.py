"""Snapshots are requested in the request and frozen by a Celery worker (snapshot_build)."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from curation import snapshots
from curation.models import DatasetSpec, Export, Snapshot, SnapshotItem
from labeling.models import Annotation
from tests import factories
from tests.curation.test_snapshots import accept_all, accepted_spec
from tests.labeling.conftest import client_for
from tests.schema import assert_response_matches_schema

pytestmark = pytest.mark.django_db


@pytest.fixture
def mixed_spec(source, nc_source):
    """A research spec with 3 accepted images: 1 CC BY (printed), 2 CC BY-NC-SA (1 printed, 1 handwritten)."""
    spec = factories.make_spec(intended_use=DatasetSpec.IntendedUse.RESEARCH)
    factories.make_image(spec=spec, source=source, categories=["printed"], data=factories.png_bytes(200, 100, seed=1))
    factories.make_image(spec=spec, source=nc_source, categories=["printed"], data=factories.png_bytes(200, 100, seed=2))
    factories.make_image(spec=spec, source=nc_source, categories=["handwritten"],
                         data=factories.png_bytes(200, 100, seed=3))
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=0, quantity=3)
    assert accept_all(vendor) == 3
    return spec


def test_create_records_a_queued_request_and_the_worker_builds_it_after_commit(
        curator, mixed_spec, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        snap = snapshots.snapshot_create(spec=mixed_spec, name="queued", created_by=curator, ratios=(1, 0, 0))
    assert snap.status == Snapshot.Status.QUEUED and snap.content_hash == "" and not snap.items.exists()
    assert len(callbacks) == 1  # the build is enqueued only once the request's transaction commits
    callbacks[0]()  # the (eager) Celery task
    snap.refresh_from_db()
    assert snap.status == Snapshot.Status.READY, snap.error
    assert (snap.item_count, snap.attempts, len(snap.content_hash)) == (3, 1, 64)
    assert snap.split_counts == {"train": 3, "validation": 0, "test": 0}
    assert snap.category_counts == {"handwritten": {"train": 1, "validation": 0, "test": 0},
                                    "printed": {"train": 2, "validation": 0, "test": 0}}
    assert snap.commercial_items == 1
    assert {code: row["images"] for code, row in snap.licence_counts.items()} == {"cc-by-4.0": 1,
                                                                                 "cc-by-nc-sa-3.0": 2}
    assert snap.licence_counts["cc-by-nc-sa-3.0"]["allows_commercial"] is False
    assert snap.started_at <= snap.finished_at


def test_the_same_work_ratios_and_seed_build_the_same_content_hash(curator, mixed_spec):
    a = factories.make_snapshot(spec=mixed_spec, name="a", created_by=curator, seed=7)
    b = factories.make_snapshot(spec=mixed_spec, name="b", created_by=curator, seed=7)
    assert a.content_hash == b.content_hash and a.status == b.status == Snapshot.Status.READY


def test_building_again_changes_nothing(curator, mixed_spec):
    snap = factories.make_snapshot(spec=mixed_spec, name="once", created_by=curator)
    items = list(snap.items.values_list("id", flat=True))
    again = snapshots.snapshot_build(snapshot=snap)
    assert again.status == Snapshot.Status.READY and again.attempts == 1
    assert list(again.items.values_list("id", flat=True)) == items


def test_a_build_that_finds_no_accepted_work_fails_with_the_reason_and_no_items(curator):
    spec = accepted_spec(images=2)
    snap = snapshots.snapshot_create(spec=spec, name="gone", created_by=curator)
    Annotation.objects.filter(task__image__spec=spec).update(status=Annotation.Status.REJECTED)
    snap = snapshots.snapshot_build(snapshot=snap)
    assert snap.status == Snapshot.Status.FAILED and "no accepted annotations" in snap.error
    assert not SnapshotItem.objects.filter(snapshot=snap).exists() and snap.content_hash == ""
    with pytest.raises(ValidationError) as exc:
        snapshots.export_create(snapshot=snap, format="jsonl", created_by=curator)
    assert "snapshot" in exc.value.message_dict and not Export.objects.exists()


def test_a_build_whose_attempt_was_taken_away_records_nothing(curator, monkeypatch):
    spec = accepted_spec(images=2)
    snap = snapshots.snapshot_create(spec=spec, name="slow", created_by=curator)
    real_freeze = snapshots._freeze

    def freeze_while_the_sweep_requeues(snapshot):
        items = real_freeze(snapshot)
        # The sweep gives up on this attempt meanwhile (in production from its own transaction).
        Snapshot.objects.filter(pk=snapshot.pk).update(status=Snapshot.Status.QUEUED, started_at=None)
        return items

    monkeypatch.setattr(snapshots, "_freeze", freeze_while_the_sweep_requeues)
    snap = snapshots.snapshot_build(snapshot=snap)
    assert snap.status != Snapshot.Status.READY and snap.content_hash == "" and snap.error == ""
    assert not SnapshotItem.objects.filter(snapshot=snap).exists()
    monkeypatch.setattr(snapshots, "_freeze", real_freeze)
    Snapshot.objects.filter(pk=snap.pk).update(status=Snapshot.Status.QUEUED)  # what the sweep committed
    snap = snapshots.snapshot_build(snapshot=snap)  # the next attempt goes through
    assert snap.status == Snapshot.Status.READY and snap.attempts == 2 and snap.item_count == 2


def test_exports_of_a_snapshot_still_building_are_refused_with_a_400(curator):
    spec = accepted_spec(images=1)
    snap = snapshots.snapshot_create(spec=spec, name="early", created_by=curator)
    r = client_for(curator).post("/api/v1/exports/", {"snapshot": snap.pk, "format": "coco"}, format="json")
    assert r.status_code == 400 and "not ready" in r.json()["snapshot"][0]


def test_rebuild_check_matches_for_untouched_items_and_catches_a_tampered_one(curator, model_team):
    spec = accepted_spec(images=3)
    snap = factories.make_snapshot(spec=spec, name="check", created_by=curator)
    check = snapshots.snapshot_rebuild_check(snapshot=snap)
    assert check.matches and check.recomputed_hash == snap.content_hash and check.items == 3

    r = client_for(model_team).get(f"/api/v1/snapshots/{snap.pk}/rebuild-check/")
    assert r.status_code == 200 and r.json() == {"content_hash": snap.content_hash,
                                                 "recomputed_hash": snap.content_hash, "items": 3, "matches": True,
                                                 "taken_down": 0, "amended": False, "amendment": ""}
    assert_response_matches_schema(r)

    item = snap.items.order_by("image_id").first()
    SnapshotItem.objects.filter(pk=item.pk).update(regions=[{**item.regions[0], "latex": "tampered"}])
    check = snapshots.snapshot_rebuild_check(snapshot=snap)
    assert not check.matches and check.recomputed_hash != snap.content_hash
    assert client_for(curator).get(f"/api/v1/snapshots/{snap.pk}/rebuild-check/").json()["matches"] is False


def test_rebuild_check_of_a_snapshot_not_yet_built_is_a_400_naming_status(curator):
    spec = accepted_spec(images=1)
    snap = snapshots.snapshot_create(spec=spec, name="pending", created_by=curator)
    r = client_for(curator).get(f"/api/v1/snapshots/{snap.pk}/rebuild-check/")
    assert r.status_code == 400 and "status" in r.json()


def test_snapshot_names_stay_unique_per_spec_while_queued(curator):
    spec = accepted_spec(images=1)
    snapshots.snapshot_create(spec=spec, name="same", created_by=curator)
    r = client_for(curator).post("/api/v1/snapshots/", {"spec": spec.pk, "name": "same"}, format="json")
    assert r.status_code == 400 and "name" in r.json()
    assert Snapshot.objects.filter(spec=spec).count() == 1


def test_the_reader_reads_a_built_snapshots_export_as_its_docstring_says(curator, mixed_spec, tmp_path):
    from django.core.files.storage import default_storage
    from torch.utils.data import DataLoader

    from curation.reader import ExportDataset

    snap = factories.make_snapshot(spec=mixed_spec, name="read", created_by=curator, ratios=(1, 0, 0))
    job = snapshots.export_run(job=snapshots.export_create(snapshot=snap, format="jsonl", created_by=curator))
    with default_storage.open(job.file, "rb") as fh:
        (tmp_path / "export.zip").write_bytes(fh.read())
    ds = ExportDataset(tmp_path / "export.zip", split="train")
    assert len(ds) == 3
    image, target = ds[0]
    first = snap.items.order_by("image_id").first()
    assert tuple(image.shape) == (3, first.height, first.width)
    assert target["image_id"] == first.image_id and target["latex"] == [first.regions[0]["latex"]]
    assert tuple(target["quads"].shape) == (1, 4, 2)
    images, targets = next(iter(DataLoader(ds, batch_size=2, collate_fn=ExportDataset.collate)))
    assert len(images) == len(targets) == 2


def test_snapshot_list_filters_by_status(curator):
    spec = accepted_spec(images=1)
    ready = factories.make_snapshot(spec=spec, name="ready", created_by=curator)
    snapshots.snapshot_create(spec=spec, name="queued", created_by=curator)
    body = client_for(curator).get("/api/v1/snapshots/", {"status": "ready"}).json()
    assert [row["id"] for row in body["results"]] == [ready.pk]
