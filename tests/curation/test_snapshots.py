"""Snapshots freeze accepted work reproducibly; exports of them are licence-clean and byte-stable."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from PIL import Image as PILImage
from pycocotools.coco import COCO

from common import rle, roles
from curation import snapshots
from curation.imaging import hamming
from curation.models import DatasetSpec, Export, Image, Snapshot, SnapshotItem, Source
from labeling.models import Region
from labeling.services import annotation_create, review_create, task_claim_next
from tests import factories
from tests.conftest import stored_files, wait_for
from tests.factories import quad
from tests.labeling.conftest import client_for

pytestmark = pytest.mark.django_db


def accept_all(vendor) -> int:
    """Annotate and accept every task `vendor` can claim; return how many."""
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    done = 0
    while (task := task_claim_next(annotator=annotator).task) is not None:
        annotation = annotation_create(task=task, annotator=annotator, submit=True,
                                       regions=[quad(latex=rf"x^{{{task.image_id}}}")])
        review_create(annotation=annotation, reviewer=reviewer, decision="accept")
        done += 1
    return done


def accepted_spec(images: int = 4, intended_use: str = DatasetSpec.IntendedUse.COMMERCIAL, source=None):
    spec = factories.make_spec(intended_use=intended_use)
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=images, source=source)
    assert accept_all(vendor) == images
    return spec


def near_duplicate_pair(spec, source, seed: int) -> tuple[Image, Image]:
    """The same picture twice, encoded differently: different files, same perceptual hash."""
    base = PILImage.open(io.BytesIO(factories.png_bytes(200, 100, seed=seed))).convert("RGB")
    twin = base.copy()
    twin.putpixel((199, 99), (250, 250, 250))
    out = []
    for img in (base, twin):
        buf = io.BytesIO()
        img.save(buf, "PNG")
        out.append(factories.make_image(spec=spec, source=source, data=buf.getvalue()))
    return out[0], out[1]


def export_bytes(snapshot, fmt: str = "coco") -> bytes:
    buf = io.BytesIO()
    snapshots.export_build(snapshot=snapshot, format=fmt, dest=buf)
    return buf.getvalue()


def test_snapshot_freezes_accepted_versions_and_later_edits_do_not_change_it(curator):
    spec = accepted_spec(images=3)
    snap = factories.make_snapshot(spec=spec, name="v1", created_by=curator)
    assert snap.item_count == 3 == snap.items.count()
    item = snap.items.order_by("image_id").first()
    assert item.annotation_version == item.annotation.current.number
    assert item.regions[0]["latex"] == rf"x^{{{item.image_id}}}"
    before_hash, before_zip = snap.content_hash, export_bytes(snap)

    # Someone corrects the accepted answer afterwards (and the source's attribution).
    Region.objects.filter(version_id=item.annotation.current_id).update(latex=r"\mathrm{changed}")
    Source.objects.filter(images__id=item.image_id).update(attribution="edited later")

    item.refresh_from_db()
    assert item.regions[0]["latex"] == rf"x^{{{item.image_id}}}"
    assert snapshots.snapshot_items_hash(snap.items.order_by("image_id")) == before_hash
    assert export_bytes(snap) == before_zip
    # A new snapshot does see the edit, so the hashes differ.
    again = factories.make_snapshot(spec=spec, name="v2", created_by=curator)
    assert again.content_hash != before_hash


def test_content_hash_is_reproducible_for_the_same_work_ratios_and_seed(curator):
    spec = accepted_spec(images=5)
    a = factories.make_snapshot(spec=spec, name="a", created_by=curator, seed=3)
    b = factories.make_snapshot(spec=spec, name="b", created_by=curator, seed=3)
    assert a.content_hash == b.content_hash and len(a.content_hash) == 64
    assert list(a.items.values_list("image_id", "split")) == list(b.items.values_list("image_id", "split"))
    assert export_bytes(a, "jsonl") == export_bytes(a, "jsonl")


def test_splits_keep_near_duplicate_pairs_and_capture_sessions_together(curator, source):
    spec = factories.make_spec()
    pairs = [near_duplicate_pair(spec, source, seed=100 + k) for k in range(6)]
    assert all(a.id != b.id and hamming(a.phash, b.phash) <= 2 for a, b in pairs)
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=0, quantity=12)
    assert accept_all(vendor) == 12
    snap = factories.make_snapshot(spec=spec, name="pairs", created_by=curator, ratios=(0.5, 0.25, 0.25))
    split_of = dict(snap.items.values_list("image_id", "split"))
    for a, b in pairs:
        assert split_of[a.id] == split_of[b.id]
    assert snap.near_duplicate_pairs >= 6
    assert len(set(split_of.values())) > 1  # the pairs were spread, but never torn apart


def test_commercial_export_leaves_out_a_non_commercial_image_and_says_why(curator, source, nc_source):
    spec = factories.make_spec(intended_use=DatasetSpec.IntendedUse.RESEARCH)
    vendor = factories.make_vendor()
    factories.make_image(spec=spec, source=source, data=factories.png_bytes(200, 100))
    factories.make_image(spec=spec, source=nc_source, data=factories.png_bytes(200, 100))
    factories.make_batch(spec, vendor, images=0, quantity=2)
    accept_all(vendor)
    # The spec is re-purposed for a commercial product after the work was done.
    DatasetSpec.objects.filter(pk=spec.pk).update(intended_use=DatasetSpec.IntendedUse.COMMERCIAL)
    snap = factories.make_snapshot(spec=DatasetSpec.objects.get(pk=spec.pk), name="c", created_by=curator)
    job = snapshots.export_create(snapshot=snap, format="coco", created_by=curator)
    job = snapshots.export_run(job=job)
    assert job.status == Export.Status.DONE, job.error
    assert (job.images, job.excluded_images) == (1, 1)
    assert job.excluded == [{"licence": "cc-by-nc-sa-3.0", "reason": job.excluded[0]["reason"], "images": 1}]
    assert "commercial" in job.excluded[0]["reason"]
    with default_storage.open(job.file, "rb") as fh, zipfile.ZipFile(fh) as zf:
        manifest = json.loads(zf.read("LICENSES.json"))
    assert "cc-by-nc-sa-3.0" in json.dumps(manifest)


def test_export_zip_holds_coco_that_pycocotools_loads(curator, tmp_path, django_capture_on_commit_callbacks):
    spec = accepted_spec(images=3)
    snap = factories.make_snapshot(spec=spec, name="coco", created_by=curator)
    with django_capture_on_commit_callbacks(execute=True):
        job = snapshots.export_create(snapshot=snap, format="coco", created_by=curator)
    job.refresh_from_db()
    assert job.status == Export.Status.DONE, job.error
    assert (job.images, job.regions) == (3, 3)
    with default_storage.open(job.file, "rb") as fh, zipfile.ZipFile(fh) as zf:
        names = zf.namelist()
        ann_file = next(n for n in names if n.endswith(".json") and "annotations" in n)
        (tmp_path / "coco.json").write_bytes(zf.read(ann_file))
        assert "ATTRIBUTION.md" in names
    coco = COCO(str(tmp_path / "coco.json"))
    assert len(coco.getImgIds()) >= 1
    assert {a["latex"] for a in coco.loadAnns(coco.getAnnIds())} <= {rf"x^{{{i}}}" for i in
                                                                     snap.items.values_list("image_id", flat=True)}


def test_api_creates_snapshots_and_exports_and_streams_the_zip(curator, model_team,
                                                             django_capture_on_commit_callbacks):
    spec = accepted_spec(images=2)
    api = client_for(curator)
    with django_capture_on_commit_callbacks(execute=True):
        r = api.post("/api/v1/snapshots/", {"spec": spec.pk, "name": "api", "ratios": [1, 0, 0]}, format="json")
    # Answered before the worker ran: queued; then the (eager) worker built it.
    assert r.status_code == 202, r.content
    assert r.json()["status"] == "queued" and r.json()["item_count"] == 0
    snap_id = r.json()["id"]
    body = api.get(f"/api/v1/snapshots/{snap_id}/").json()
    assert body["status"] == "ready" and body["split_counts"]["train"] == 2 and body["item_count"] == 2
    team = client_for(model_team)
    with django_capture_on_commit_callbacks(execute=True):
        r = team.post("/api/v1/exports/", {"snapshot": snap_id, "format": "jsonl"}, format="json")
    assert r.status_code == 201, r.content
    export_id = r.json()["id"]
    r = team.get(f"/api/v1/exports/{export_id}/")
    assert r.json()["status"] == "done"
    r = team.get(f"/api/v1/exports/{export_id}/download/")
    assert r.status_code == 200 and r["Content-Type"] == "application/zip"
    body = b"".join(r.streaming_content)
    assert zipfile.ZipFile(io.BytesIO(body)).testzip() is None
    assert team.get("/api/v1/snapshots/").json()["count"] == 1
    assert team.post("/api/v1/snapshots/", {"spec": spec.pk, "name": "x"}, format="json").status_code == 403


def test_list_endpoints_take_a_fixed_number_of_queries(curator, django_assert_max_num_queries):
    spec = accepted_spec(images=2)
    for k in range(3):
        snap = factories.make_snapshot(spec=spec, name=f"s{k}", created_by=curator)
        snapshots.export_create(snapshot=snap, format="jsonl", created_by=curator)
    api = client_for(curator)
    with django_assert_max_num_queries(6):
        assert api.get("/api/v1/snapshots/").json()["count"] == 3
    with django_assert_max_num_queries(6):
        assert api.get("/api/v1/exports/").json()["count"] == 3


def test_annotator_sees_no_snapshots_or_exports(curator):
    spec = accepted_spec(images=2)
    snap = factories.make_snapshot(spec=spec, name="hidden", created_by=curator)
    job = snapshots.export_create(snapshot=snap, format="coco", created_by=curator)
    annotator = client_for(factories.make_user(roles.ANNOTATOR))
    assert annotator.get("/api/v1/snapshots/").json()["count"] == 0
    assert annotator.get("/api/v1/exports/").json()["count"] == 0
    assert annotator.get(f"/api/v1/snapshots/{snap.pk}/").status_code == 404
    assert annotator.get(f"/api/v1/exports/{job.pk}/").status_code == 404
    assert annotator.get(f"/api/v1/exports/{job.pk}/download/").status_code == 404
    r = annotator.post("/api/v1/snapshots/", {"spec": spec.pk, "name": "mine"}, format="json")
    assert r.status_code == 403


def test_unknown_export_format_is_a_400_naming_format(curator):
    spec = accepted_spec(images=1)
    snap = factories.make_snapshot(spec=spec, name="f", created_by=curator)
    r = client_for(curator).post("/api/v1/exports/", {"snapshot": snap.pk, "format": "pascal-voc"}, format="json")
    assert r.status_code == 400 and "format" in r.json()
    assert not Export.objects.exists()


def test_snapshot_of_a_spec_without_accepted_work_is_a_400(curator, spec):
    r = client_for(curator).post("/api/v1/snapshots/", {"spec": spec.pk, "name": "empty"}, format="json")
    assert r.status_code == 400 and "spec" in r.json()
    assert not SnapshotItem.objects.exists()


@pytest.mark.parametrize("ratios,field", [([1, 1], "ratios"), ([-1, 1, 1], "ratios"), ([0, 0, 0], "ratios"),
                                          ([1e308, 1e308, 1e308], "ratios")])  # each finite, the sum is not
def test_bad_ratios_are_a_400_naming_ratios(curator, ratios, field):
    spec = accepted_spec(images=1)
    r = client_for(curator).post("/api/v1/snapshots/", {"spec": spec.pk, "name": "r", "ratios": ratios},
                                 format="json")
    assert r.status_code == 400 and field in r.json()
    assert not Snapshot.objects.exists()


@pytest.mark.parametrize("seed", [2**31, -(2**31) - 1, 2**63, 10**20])
def test_seed_beyond_the_columns_range_is_a_400_naming_seed(curator, seed):
    spec = accepted_spec(images=1)
    r = client_for(curator).post("/api/v1/snapshots/", {"spec": spec.pk, "name": "s", "seed": seed}, format="json")
    assert r.status_code == 400 and "seed" in r.json()
    assert not Snapshot.objects.exists()


def test_duplicate_snapshot_name_is_refused(curator):
    spec = accepted_spec(images=1)
    factories.make_snapshot(spec=spec, name="same", created_by=curator)
    with pytest.raises(ValidationError) as exc:
        snapshots.snapshot_create(spec=spec, name="same", created_by=curator)
    assert "name" in exc.value.message_dict


def test_rebuilding_an_export_gives_the_same_bytes_in_storage(curator):
    spec = accepted_spec(images=3)
    snap = factories.make_snapshot(spec=spec, name="twice", created_by=curator)
    first, second = (snapshots.export_run(job=snapshots.export_create(snapshot=snap, format=fmt, created_by=curator))
                     for fmt in ("coco", "coco"))
    assert first.file != second.file
    with default_storage.open(first.file, "rb") as a, default_storage.open(second.file, "rb") as b:
        assert a.read() == b.read()
    assert first.size == second.size > 0


def test_a_failed_export_is_marked_failed_and_leaves_no_file(curator):
    spec = accepted_spec(images=2)
    snap = factories.make_snapshot(spec=spec, name="broken", created_by=curator)
    default_storage.delete(snap.items.first().file)  # the image file went missing
    job = snapshots.export_run(job=snapshots.export_create(snapshot=snap, format="coco", created_by=curator))
    assert job.status == Export.Status.FAILED and job.error and not job.file
    assert not [n for n in stored_files() if n.startswith("exports/")]
    r = client_for(curator).get(f"/api/v1/exports/{job.pk}/download/")
    assert r.status_code == 404


def test_export_run_leaves_a_finished_export_alone(curator):
    spec = accepted_spec(images=1)
    snap = factories.make_snapshot(spec=spec, name="once", created_by=curator)
    job = snapshots.export_run(job=snapshots.export_create(snapshot=snap, format="jsonl", created_by=curator))
    again = snapshots.export_run(job=job)
    assert again.file == job.file and again.status == Export.Status.DONE


def test_exported_coco_masks_decode_to_the_stored_masks(curator, tmp_path):
    spec = factories.make_spec()
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=1)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    task = task_claim_next(annotator=annotator).task
    mask = np.zeros((task.image.height, task.image.width), dtype=np.uint8)
    mask[20:60, 30:150] = 1
    annotation = annotation_create(task=task, annotator=annotator, submit=True,
                                   regions=[{"kind": "mask", "mask": rle.encode(mask), "latex": "a+b"}])
    review_create(annotation=annotation, reviewer=factories.make_user(roles.REVIEWER, vendor=vendor),
                  decision="accept")
    snap = factories.make_snapshot(spec=spec, name="mask", created_by=curator)
    assert snap.items.get().regions[0]["mask_rle"]["size"] == [task.image.height, task.image.width]
    job = snapshots.export_run(job=snapshots.export_create(snapshot=snap, format="coco", created_by=curator))
    assert job.status == Export.Status.DONE, job.error
    with default_storage.open(job.file, "rb") as fh, zipfile.ZipFile(fh) as zf:
        ann_file = next(n for n in zf.namelist() if n.endswith(".json") and "annotations" in n)
        (tmp_path / "coco.json").write_bytes(zf.read(ann_file))
    coco = COCO(str(tmp_path / "coco.json"))
    (ann,) = coco.loadAnns(coco.getAnnIds())
    assert ann["latex"] == "a+b"
    assert np.array_equal(coco.annToMask(ann), mask)


# serialized_rollback, as the other real-worker tests: a plain flush re-creates content types that
# a later serialized_rollback test would then insert twice.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_real_worker_builds_the_snapshot_and_the_export_and_the_api_streams_it(real_worker):
    curator = factories.make_user(roles.CURATOR)
    spec = accepted_spec(images=2)
    api = client_for(curator)
    r = api.post("/api/v1/snapshots/", {"spec": spec.pk, "name": "worker"}, format="json")
    assert r.status_code == 202, r.content
    snap = wait_for(lambda: Snapshot.objects.filter(id=r.json()["id"], status__in=["ready", "failed"]).first())
    assert snap.status == Snapshot.Status.READY and snap.item_count == 2, snap.error
    r = api.post("/api/v1/exports/", {"snapshot": snap.pk, "format": "coco"}, format="json")
    assert r.status_code == 201, r.content
    job = wait_for(lambda: Export.objects.filter(id=r.json()["id"], status__in=["done", "failed"]).first())
    assert job.status == Export.Status.DONE, job.error
    body = b"".join(api.get(f"/api/v1/exports/{job.pk}/download/").streaming_content)
    assert body == export_bytes(snap, "coco")


def test_admin_lists_snapshots_and_exports_but_cannot_change_them(curator, client):
    spec = accepted_spec(images=1)
    snap = factories.make_snapshot(spec=spec, name="admin", created_by=curator)
    job = snapshots.export_create(snapshot=snap, format="coco", created_by=curator)
    admin = factories.UserFactory(is_staff=True, is_superuser=True)
    client.force_login(admin)
    assert snap.content_hash[:12] in client.get("/admin/curation/snapshot/").content.decode()
    assert client.get("/admin/curation/export/").status_code == 200
    assert client.get("/admin/curation/snapshot/add/").status_code == 403
    r = client.post(f"/admin/curation/export/{job.pk}/change/", {"status": "done"})
    assert r.status_code == 403
    job.refresh_from_db()
    assert job.status == Export.Status.QUEUED


def distinct_png(k: int) -> bytes:
    """Stripe patterns whose perceptual hashes lie >= 24 bits apart for k in 1..6, so they are
    never grouped as near-duplicates (factories.png_bytes of close seeds often are, and then
    land in one split whatever the ratios)."""
    x, y = np.arange(200)[None, :], np.arange(100)[:, None]
    stripes = ((np.sin(x * k * 0.06) + np.cos(y * (7 - k) * 0.09)) > 0).astype(np.uint8) * 255
    buf = io.BytesIO()
    PILImage.fromarray(np.repeat(stripes[:, :, None], 3, 2)).save(buf, "PNG")
    return buf.getvalue()


def test_model_team_pages_through_a_snapshots_items_by_split(curator, model_team, django_assert_max_num_queries):
    spec = factories.make_spec()
    for k in range(1, 5):
        factories.make_image(spec=spec, data=distinct_png(k))
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=0, quantity=4)
    assert accept_all(vendor) == 4
    snap = factories.make_snapshot(spec=spec, name="items", created_by=curator, ratios=(0.5, 0, 0.5))
    team = client_for(model_team)
    with django_assert_max_num_queries(8):
        body = team.get(f"/api/v1/snapshots/{snap.pk}/items/?split=test&limit=10").json()
    expected = sorted(snap.items.filter(split="test").values_list("image_id", flat=True))
    assert [row["image"] for row in body["results"]] == expected and body["count"] == len(expected)
    assert body["results"][0]["regions"][0]["latex"].startswith("x^")

@pytest.mark.parametrize("split", ["training", "te\x00st"])
def test_items_of_an_unknown_split_are_a_400_naming_split(curator, split):
    spec = accepted_spec(images=1)
    snap = factories.make_snapshot(spec=spec, name="items", created_by=curator)
    r = client_for(curator).get(f"/api/v1/snapshots/{snap.pk}/items/", {"split": split})
    assert r.status_code == 400 and "split" in r.json()


def test_exports_list_filters_by_snapshot(curator):
    spec = accepted_spec(images=1)
    first, second = (factories.make_snapshot(spec=spec, name=n, created_by=curator) for n in ("one", "two"))
    wanted = snapshots.export_create(snapshot=first, format="coco", created_by=curator)
    snapshots.export_create(snapshot=second, format="coco", created_by=curator)
    body = client_for(curator).get("/api/v1/exports/", {"snapshot": first.pk}).json()
    assert [row["id"] for row in body["results"]] == [wanted.pk]


def test_an_image_in_a_snapshot_cannot_be_deleted(curator):
    spec = accepted_spec(images=1)
    snap = factories.make_snapshot(spec=spec, name="keep", created_by=curator)
    image_id = snap.items.get().image_id
    r = client_for(curator).delete(f"/api/v1/images/{image_id}/")
    assert r.status_code == 400 and "keep" in r.json()["image"][0]
    assert Image.objects.filter(pk=image_id).exists()
    assert snap.items.get().file in stored_files()
