"""Takedown of images already frozen in snapshots: a copyright holder's takedown request or a
personal-data erasure request (PIPA / GDPR). The files go after commit, frozen snapshot items are
marked (exports leave them out and say so, rebuild-check reports the amendment), export zips that
held the image are withdrawn (410), its open work leaves the queue, and nothing serves its pixels."""
from __future__ import annotations

import io
import json
import zipfile
from urllib.parse import urlparse

import pytest
from django.core.files.storage import default_storage
from django.db import transaction

from common import roles
from curation import services, signed_urls, snapshots
from curation.models import DatasetSpec, Export, Image, SnapshotItem, Takedown
from labeling.models import Annotation, Task
from labeling.services import annotation_create, batch_candidate_images, review_create, task_claim_next
from tests import factories
from tests.factories import quad
from tests.labeling.conftest import client_for

pytestmark = pytest.mark.django_db

BODY = {"reason_kind": "copyright", "reason": "Letter of 2026-03-02 from the publisher: page 12 of the workbook.",
        "requested_by": "Mirae Publishing Co."}


def _accepted_world(images: int = 3, intended_use: str = DatasetSpec.IntendedUse.COMMERCIAL, source=None):
    """A spec whose `images` images are all annotated and accepted, with the annotator kept."""
    spec = factories.make_spec(intended_use=intended_use)
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=images, source=source)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    while (task := task_claim_next(annotator=annotator).task) is not None:
        annotation = annotation_create(task=task, annotator=annotator, submit=True,
                                       regions=[quad(latex=rf"x^{{{task.image_id}}}")])
        review_create(annotation=annotation, reviewer=reviewer, decision="accept")
    return spec, vendor, annotator


def _export(snap, curator, fmt: str = "coco") -> Export:
    job = snapshots.export_create(snapshot=snap, format=fmt, created_by=curator)
    return snapshots.export_run(job=job)


@pytest.fixture
def frozen(curator):
    """A ready snapshot of 3 accepted images and a done COCO export of it."""
    spec, vendor, annotator = _accepted_world()
    snap = factories.make_snapshot(spec=spec, name="v1", created_by=curator)
    export = _export(snap, curator)
    assert export.status == Export.Status.DONE
    image = Image.objects.get(pk=snap.items.order_by("image_id").first().image_id)
    return {"spec": spec, "snap": snap, "export": export, "image": image, "vendor": vendor, "annotator": annotator}


def _takedown(api, image, body=BODY):
    return api.post(f"/api/v1/images/{image.pk}/takedown/", body, format="json")


def _zip_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


# ---------------------------------------------------------------- files


def test_takedown_erases_the_file_and_thumbnail_after_commit(curator_api, frozen, django_capture_on_commit_callbacks):
    image, export = frozen["image"], frozen["export"]
    assert default_storage.exists(image.file) and default_storage.exists(image.thumbnail)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        r = _takedown(curator_api, image)
        assert r.status_code == 201, r.content
        # Not committed yet: the files are still there.
        assert default_storage.exists(image.file) and default_storage.exists(export.file)
    for callback in callbacks:
        callback()
    assert not default_storage.exists(image.file)
    assert not default_storage.exists(image.thumbnail)
    assert not default_storage.exists(export.file)  # the zip that held it
    td = Takedown.objects.get()
    assert (td.image_ref, td.kind, td.requested_by) == (image.pk, "copyright", "Mirae Publishing Co.")
    assert td.files_erased == [image.file, image.thumbnail]
    assert td.snapshot_items == 1 and td.exports_withdrawn == 1
    body = r.json()
    assert body["image"] == image.pk and body["reason_kind"] == "copyright"
    image.refresh_from_db()
    assert image.taken_down_at is not None and image.original_filename == ""


def test_a_rolled_back_takedown_erases_nothing(curator, frozen, django_capture_on_commit_callbacks):
    image, export = frozen["image"], frozen["export"]
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            services.image_takedown(image=image, kind="personal_data", reason="Parent's request",
                                    requested_by="Parent of the pupil", actor=curator)
            raise RuntimeError("something after it failed")
    assert default_storage.exists(image.file) and default_storage.exists(image.thumbnail)
    assert default_storage.exists(export.file)
    assert not Takedown.objects.exists()
    image.refresh_from_db()
    export.refresh_from_db()
    assert image.taken_down_at is None and export.status == Export.Status.DONE
    assert not SnapshotItem.objects.filter(takedown__isnull=False).exists()


# ------------------------------------------------------- nothing serves it


def test_no_endpoint_serves_the_pixels_afterwards(curator_api, curator, frozen, django_capture_on_commit_callbacks):
    image, export, annotator = frozen["image"], frozen["export"], frozen["annotator"]
    item = SnapshotItem.objects.get(snapshot=frozen["snap"], image=image)
    # A guide shows it as an example; a vendor's question points at a region of it.
    from guides import services as guides_services

    version = factories.make_guide(spec=frozen["spec"], publish=False, by=curator)
    example = guides_services.guide_example_add(version=version, image=image, kind="good", regions=[quad()["points"]])
    factories.make_contract(vendor=frozen["vendor"], spec=frozen["spec"])
    question = guides_services.question_ask(asked_by=annotator, spec=frozen["spec"], title="Bars?", body="How?",
                                            image=image, region=quad()["points"])
    urls = [f"/api/v1/images/{image.pk}/file/", f"/api/v1/images/{image.pk}/thumbnail/",
            f"/api/v1/guide-examples/{example.pk}/image/", f"/api/v1/guide-examples/{example.pk}/overlay/",
            f"/api/v1/questions/{question.pk}/crop/", f"/api/v1/questions/{question.pk}/overlay/"]
    for url in urls:
        assert curator_api.get(url).status_code == 200, url
    image_url, item_url = signed_urls.image_url(image.pk), signed_urls.snapshot_item_url(item.pk)
    client = client_for(curator)
    for url in (image_url, item_url):
        assert client.get(urlparse(url).path).status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        assert _takedown(curator_api, image).status_code == 201

    for url in urls:
        r = curator_api.get(url)
        assert r.status_code == 410, (url, r.status_code)
        assert "taken down" in r.json()["detail"]
    for url in (image_url, item_url):
        r = client.get(urlparse(url).path)
        assert r.status_code == 410 and b"taken down" in r.content
    r = curator_api.get(f"/api/v1/exports/{export.pk}/download/")
    assert r.status_code == 410 and "taken down" in r.json()["detail"]
    detail = curator_api.get(f"/api/v1/exports/{export.pk}/").json()
    assert detail["status"] == "withdrawn" and detail["download_url"] is None and detail["withdrawn_reason"]
    # The image row stays (paid work and frozen items refer to it) and says it was taken down.
    assert curator_api.get(f"/api/v1/images/{image.pk}/").json()["taken_down_at"]


# ------------------------------------------------------------- exports


def test_an_export_built_afterwards_leaves_the_item_out_and_says_so(curator_api, curator, frozen,
                                                                     django_capture_on_commit_callbacks):
    image, snap = frozen["image"], frozen["snap"]
    with django_capture_on_commit_callbacks(execute=True):
        assert _takedown(curator_api, image).status_code == 201
    job = _export(snap, curator, "coco")
    assert job.status == Export.Status.DONE, job.error
    assert job.images == 2 and job.excluded_images == 1
    assert any(row["reason"].startswith("taken down") for row in job.excluded)
    with default_storage.open(job.file, "rb") as fh:
        members = _zip_members(fh.read())
    assert f"images/{image.pk:08d}.png" not in members
    provenance = [json.loads(line) for line in members["PROVENANCE.jsonl"].splitlines()]
    assert image.pk not in {row["image_id"] for row in provenance} and len(provenance) == 2
    takedowns = json.loads(members["TAKEDOWNS.json"])
    assert takedowns["images"] == 1
    assert takedowns["items"][0]["image_id"] == image.pk and takedowns["items"][0]["kind"] == "copyright"
    assert "Mirae" not in members["TAKEDOWNS.json"].decode()  # no requester nor free text in the zip
    licences = json.loads(members["LICENSES.json"])
    assert licences["excluded"]["images"] == 1
    coco = json.loads(members["annotations.json"]) if "annotations.json" in members else None
    if coco is not None:
        assert image.pk not in {im["id"] for im in coco["images"]}


def test_an_untouched_snapshot_exports_the_same_bytes_without_a_takedowns_file(curator, frozen):
    first, second = io.BytesIO(), io.BytesIO()
    snapshots.export_build(snapshot=frozen["snap"], format="jsonl", dest=first)
    snapshots.export_build(snapshot=frozen["snap"], format="jsonl", dest=second)
    assert first.getvalue() == second.getvalue()
    assert "TAKEDOWNS.json" not in _zip_members(first.getvalue())


def test_export_paths_for_commercial_and_research_specs_still_work(curator, nc_source, source,
                                                                    django_capture_on_commit_callbacks):
    # Research: non-commercial images go in, the taken-down one does not.
    spec, _, _ = _accepted_world(images=3, intended_use=DatasetSpec.IntendedUse.RESEARCH, source=nc_source)
    snap = factories.make_snapshot(spec=spec, created_by=curator)
    taken = snap.items.order_by("image_id").first().image
    with django_capture_on_commit_callbacks(execute=True):
        services.image_takedown(image=taken, kind="personal_data", reason="Pupil's parent asked",
                                requested_by="Parent", actor=curator)
    for fmt in ("jsonl", "im2latex", "yolo-obb"):
        job = _export(snap, curator, fmt)
        assert job.status == Export.Status.DONE, job.error
        assert job.images == 2 and job.excluded_images == 1, (fmt, job.excluded)
    # Commercial: licence-clean images go in, the taken-down one does not.
    spec, _, _ = _accepted_world(images=2, source=source)
    snap = factories.make_snapshot(spec=spec, created_by=curator)
    taken = snap.items.order_by("image_id").first().image
    with django_capture_on_commit_callbacks(execute=True):
        services.image_takedown(image=taken, kind="copyright", reason="DMCA notice", requested_by="Holder",
                                actor=curator)
    job = _export(snap, curator, "coco")
    assert job.status == Export.Status.DONE, job.error
    assert (job.images, job.excluded_images) == (1, 1)
    with default_storage.open(job.file, "rb") as fh:
        assert json.loads(_zip_members(fh.read())["LICENSES.json"])["intended_use"] == "commercial"


def test_an_export_that_never_held_the_image_is_not_withdrawn(curator, django_capture_on_commit_callbacks):
    # An im2latex export writes crops, which a no-derivatives licence forbids: the image is not in it.
    nd = factories.make_source("cc-by-nd-4.0")
    spec, _, _ = _accepted_world(images=1, intended_use=DatasetSpec.IntendedUse.RESEARCH, source=nd)
    snap = factories.make_snapshot(spec=spec, created_by=curator)
    job = _export(snap, curator, "im2latex")  # the ND image is left out of the crops
    assert job.status == Export.Status.DONE and job.images == 0
    image = snap.items.get().image
    with django_capture_on_commit_callbacks(execute=True):
        services.image_takedown(image=image, kind="copyright", reason="r", requested_by="h", actor=curator)
    job.refresh_from_db()
    assert job.status == Export.Status.DONE and default_storage.exists(job.file)


# ----------------------------------------------------- snapshots, rebuild-check


def test_rebuild_check_reports_the_amendment_not_a_mismatch(curator_api, frozen, django_capture_on_commit_callbacks):
    snap = frozen["snap"]
    before = curator_api.get(f"/api/v1/snapshots/{snap.pk}/rebuild-check/").json()
    assert before["matches"] and not before["amended"] and before["taken_down"] == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert _takedown(curator_api, frozen["image"]).status_code == 201
    after = curator_api.get(f"/api/v1/snapshots/{snap.pk}/rebuild-check/").json()
    assert after["matches"] is True  # the frozen rows are untouched: the recorded hash still holds
    assert after["content_hash"] == before["content_hash"] == snap.content_hash
    assert after["amended"] is True and after["taken_down"] == 1 and "taken down" in after["amendment"]
    assert curator_api.get(f"/api/v1/snapshots/{snap.pk}/").json()["taken_down_items"] == 1


def test_a_later_snapshot_and_batch_leave_the_image_out(curator, frozen, django_capture_on_commit_callbacks):
    image = frozen["image"]
    with django_capture_on_commit_callbacks(execute=True):
        services.image_takedown(image=image, kind="other", reason="Court order", requested_by="Court", actor=curator)
    later = factories.make_snapshot(spec=frozen["spec"], name="v2", created_by=curator)
    assert later.item_count == 2 and not later.items.filter(image=image).exists()
    assert image not in list(batch_candidate_images(spec=frozen["spec"], quantity=10, only_unlabeled=False))


# --------------------------------------------------------------- the queue


def test_open_tasks_leave_the_queue_and_answered_work_stays(curator, spec, source, vendor,
                                                             django_capture_on_commit_callbacks):
    factories.make_batch(spec, vendor, images=3, source=source)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    drafted = task_claim_next(annotator=annotator).task
    annotation = annotation_create(task=drafted, annotator=annotator, regions=[quad()])  # a draft
    leased = task_claim_next(annotator=factories.make_user(roles.ANNOTATOR, vendor=vendor)).task
    untouched = Task.objects.exclude(pk__in=[drafted.pk, leased.pk]).get()
    with django_capture_on_commit_callbacks(execute=True):
        for task in (drafted, leased, untouched):
            services.image_takedown(image=task.image, kind="copyright", reason="r", requested_by="h", actor=curator)
    assert not Task.objects.filter(pk__in=[leased.pk, untouched.pk]).exists()  # nobody answered them
    assert Task.objects.filter(pk=drafted.pk).exists()  # the annotation is a record of work
    annotation.refresh_from_db()
    assert annotation.status == Annotation.Status.WITHDRAWN
    other = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    assert task_claim_next(annotator=other).task is None
    assert task_claim_next(annotator=annotator).task is None


# ------------------------------------------------------------- who may


@pytest.mark.parametrize("role", [roles.VENDOR_MANAGER, roles.ANNOTATOR, roles.REVIEWER, roles.MODEL_TEAM])
def test_only_curators_take_images_down(role, frozen):
    image = frozen["image"]
    user = factories.make_user(role, vendor=frozen["vendor"] if role != roles.MODEL_TEAM else None)
    api = client_for(user)
    assert api.post(f"/api/v1/images/{image.pk}/takedown/", BODY, format="json").status_code == 403
    assert api.post(f"/api/v1/sources/{image.source_id}/takedown/", BODY, format="json").status_code == 403
    assert api.get("/api/v1/takedowns/").status_code == 403
    assert not Takedown.objects.exists() and default_storage.exists(image.file)


def test_an_unknown_image_is_a_404(curator_api):
    assert curator_api.post("/api/v1/images/999999/takedown/", BODY, format="json").status_code == 404


@pytest.mark.parametrize(("change", "field"), [
    ({"reason": ""}, "reason"),
    ({"reason": "   "}, "reason"),
    ({"reason": None}, "reason"),
    ({"reason_kind": "because"}, "reason_kind"),
    ({"reason_kind": None}, "reason_kind"),
    ({"requested_by": ""}, "requested_by"),
    ({"requested_by": "x" * 201}, "requested_by"),
])
def test_bad_input_is_a_400_naming_the_field_and_nothing_is_stored(curator_api, frozen, change, field,
                                                                    django_capture_on_commit_callbacks):
    image = frozen["image"]
    body = {k: v for k, v in {**BODY, **change}.items() if v is not None}
    with django_capture_on_commit_callbacks(execute=True):
        r = curator_api.post(f"/api/v1/images/{image.pk}/takedown/", body, format="json")
    assert r.status_code == 400 and field in r.json(), r.content
    assert not Takedown.objects.exists()
    assert default_storage.exists(image.file) and default_storage.exists(frozen["export"].file)
    image.refresh_from_db()
    assert image.taken_down_at is None


def test_a_second_takedown_of_one_image_is_a_400(curator_api, frozen, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert _takedown(curator_api, frozen["image"]).status_code == 201
        r = _takedown(curator_api, frozen["image"])
    assert r.status_code == 400 and "already taken down" in r.json()["image"][0]
    assert Takedown.objects.count() == 1


def test_the_service_names_bad_fields_too(curator, frozen):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as exc:
        services.image_takedown(image=frozen["image"], kind="nope", reason="", requested_by="", actor=curator)
    assert set(exc.value.message_dict) == {"kind", "reason", "requested_by"}


# -------------------------------------------------------------- sources


def test_source_takedown_takes_every_image_of_the_source(curator_api, curator, source,
                                                         django_capture_on_commit_callbacks):
    spec, _, _ = _accepted_world(images=2, source=source)
    other_spec = factories.make_spec()
    extra = factories.make_image(spec=other_spec, source=source, data=factories.png_bytes(50, 40, seed=7))
    bystander = factories.make_image(spec=other_spec, source=factories.make_source(),
                                     data=factories.png_bytes(50, 40, seed=8))
    snap = factories.make_snapshot(spec=spec, created_by=curator)
    images = list(Image.objects.filter(source=source))
    assert len(images) == 3
    with django_capture_on_commit_callbacks(execute=True):
        r = curator_api.post(f"/api/v1/sources/{source.pk}/takedown/", BODY, format="json")
    assert r.status_code == 201, r.content
    assert sorted(row["image"] for row in r.json()) == sorted(im.pk for im in images)
    assert Takedown.objects.filter(whole_source=True).count() == 3
    for im in images:
        assert not default_storage.exists(im.file) and not default_storage.exists(im.thumbnail)
    assert default_storage.exists(bystander.file)
    snap.refresh_from_db()
    assert snap.taken_down_items == 2
    assert curator_api.get(f"/api/v1/images/{extra.pk}/file/").status_code == 410
    listed = curator_api.get("/api/v1/takedowns/").json()
    assert listed["count"] == 3
    # Nothing left to take down: a 400 naming the source.
    with django_capture_on_commit_callbacks(execute=True):
        again = curator_api.post(f"/api/v1/sources/{source.pk}/takedown/", BODY, format="json")
    assert again.status_code == 400 and "source" in again.json()


def test_image_delete_points_to_takedown_for_a_snapshotted_image(curator_api, frozen):
    r = curator_api.delete(f"/api/v1/images/{frozen['image'].pk}/")
    assert r.status_code == 400 and "take it down" in r.json()["image"][0]
