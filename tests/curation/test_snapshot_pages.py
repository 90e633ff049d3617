"""Snapshot pages: list, new-snapshot form, detail with splits, licences, exports and downloads."""
from __future__ import annotations

import io
import json
import zipfile

import pytest
from django.test import Client

from common import roles
from curation import snapshots
from curation.models import DatasetSpec, Export, Snapshot, SnapshotItem
from tests import factories
from tests.curation.test_snapshots import accept_all, accepted_spec
from tests.pages import field_errors, text

pytestmark = pytest.mark.django_db


def client_as(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def commercial_mix(source, nc_source):
    """A spec accepted while it was for research (2 printed CC BY, 1 handwritten CC BY-NC-SA),
    then re-purposed commercial: its exports must leave the NC image out."""
    spec = factories.make_spec(name="Homework", intended_use=DatasetSpec.IntendedUse.RESEARCH)
    for seed, (src, cats) in enumerate([(source, ["printed"]), (source, ["printed"]),
                                        (nc_source, ["handwritten"])]):
        factories.make_image(spec=spec, source=src, categories=cats, data=factories.png_bytes(200, 100, seed=seed))
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=0, quantity=3)
    assert accept_all(vendor) == 3
    DatasetSpec.objects.filter(pk=spec.pk).update(intended_use=DatasetSpec.IntendedUse.COMMERCIAL)
    return DatasetSpec.objects.get(pk=spec.pk)


def test_list_shows_status_splits_licence_summary_and_short_hash_in_few_queries(
        curator, commercial_mix, django_assert_max_num_queries):
    built = [factories.make_snapshot(spec=commercial_mix, name=f"v{k}", created_by=curator, ratios=(1, 0, 0))
             for k in range(3)]
    snapshots.snapshot_create(spec=commercial_mix, name="pending", created_by=curator)
    client = client_as(curator)
    with django_assert_max_num_queries(8):
        r = client.get("/snapshots/")
    assert r.status_code == 200
    page = text(r)
    assert page.count("2 of 3 commercial-usable") == 3 and "1 non-commercial" in page
    assert "v0 Ready 3 0 0" in page and "pending Queued 0 0 0" in page
    assert built[0].content_hash[:12] in page and built[0].content_hash[:13] not in page
    assert "New snapshot" in page
    other = factories.make_spec(name="Other spec")
    assert "v0" not in text(client.get(f"/snapshots/?spec={other.pk}"))


def test_curator_requests_a_snapshot_with_the_form_and_the_worker_builds_it(
        curator, commercial_mix, django_capture_on_commit_callbacks):
    client = client_as(curator)
    form = client.get(f"/snapshots/new/?spec={commercial_mix.pk}")
    assert form.status_code == 200 and f'<option value="{commercial_mix.pk}" selected>' in form.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post("/snapshots/new/", {"spec": commercial_mix.pk, "name": "release-1", "train": "1",
                                            "validation": "0", "test": "0", "seed": "5"})
    snap = Snapshot.objects.get(name="release-1")
    assert r.status_code == 302 and r["Location"] == f"/snapshots/{snap.pk}/"
    assert (snap.status, snap.seed, snap.created_by, snap.item_count) == ("ready", 5, curator, 3)
    page = text(client.get(r["Location"]))
    assert "is queued" in page  # the message from the form submit
    assert "Printed 2 0 0 2" in page and "Handwritten 1 0 0 1" in page and "All images 3 0 0 3" in page
    assert "CC BY-NC-SA 3.0" in page and "2 of 3 images may be used commercially" in page


def test_bad_snapshot_input_is_shown_beside_the_field_and_nothing_is_stored(curator, commercial_mix):
    factories.make_snapshot(spec=commercial_mix, name="taken", created_by=curator)
    client = client_as(curator)
    base = {"spec": commercial_mix.pk, "train": "0.8", "validation": "0.1", "test": "0.1", "seed": "0"}
    r = client.post("/snapshots/new/", {**base, "name": "taken"})
    assert r.status_code == 400 and "already has a snapshot named" in field_errors(r, "id_name")
    r = client.post("/snapshots/new/", {**base, "name": "zero", "train": "0", "validation": "0", "test": "0"})
    assert r.status_code == 400 and "positive sum" in text(r)
    r = client.post("/snapshots/new/", {**base, "name": "neg", "train": "-1"})
    assert r.status_code == 400 and field_errors(r, "id_train")
    assert list(Snapshot.objects.values_list("name", flat=True)) == ["taken"]


def test_commercial_spec_detail_lists_the_non_commercial_images_left_out_and_why(curator, commercial_mix):
    snap = factories.make_snapshot(spec=commercial_mix, name="c", created_by=curator)
    nc_item = SnapshotItem.objects.get(snapshot=snap, licence__allows_commercial=False)
    page = text(client_as(curator).get(f"/snapshots/{snap.pk}/"))
    assert "exports leave out 1 image, because their licence forbids commercial use" in page
    assert f"{nc_item.image_id} {nc_item.licence['name']} {nc_item.source['name']}" in page


def test_research_spec_detail_has_no_left_out_section(curator):
    spec = accepted_spec(images=2, intended_use=DatasetSpec.IntendedUse.RESEARCH)
    snap = factories.make_snapshot(spec=spec, name="r", created_by=curator)
    page = text(client_as(curator).get(f"/snapshots/{snap.pk}/"))
    assert "Left out of exports" not in page and "2 of 2 images may be used commercially" in page


def test_model_team_starts_a_jsonl_export_and_downloads_the_zip(
        curator, model_team, commercial_mix, django_capture_on_commit_callbacks):
    snap = factories.make_snapshot(spec=commercial_mix, name="team", created_by=curator)
    team = client_as(model_team)
    detail = team.get(f"/snapshots/{snap.pk}/")
    assert detail.status_code == 200 and "New snapshot" not in text(detail) and "Start export" in text(detail)
    with django_capture_on_commit_callbacks(execute=True):
        r = team.post(f"/snapshots/{snap.pk}/exports/", {"format": "jsonl"})
    assert r.status_code == 302 and r["Location"] == f"/snapshots/{snap.pk}/#exports"
    job = Export.objects.get(snapshot=snap)
    assert (job.status, job.format, job.created_by, job.images, job.excluded_images) == ("done", "jsonl",
                                                                                         model_team, 2, 1)
    html = team.get(f"/snapshots/{snap.pk}/").content.decode()
    assert f'href="/api/v1/exports/{job.pk}/download/"' in html
    body = b"".join(team.get(f"/api/v1/exports/{job.pk}/download/").streaming_content)
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert json.loads(zf.read("LICENSES.json"))["excluded"]["images"] == 1


def test_an_unknown_export_format_is_refused_with_a_message(curator):
    snap = factories.make_snapshot(spec=accepted_spec(images=1), name="f", created_by=curator)
    client = client_as(curator)
    r = client.post(f"/snapshots/{snap.pk}/exports/", {"format": "pascal-voc"}, follow=True)
    assert "Choose one of the export formats" in text(r) and not Export.objects.exists()


def test_a_running_export_is_shown_with_what_the_poller_needs(curator):
    snap = factories.make_snapshot(spec=accepted_spec(images=1), name="p", created_by=curator)
    job = snapshots.export_create(snapshot=snap, format="coco", created_by=curator)  # not run: no commit in tests
    html = client_as(curator).get(f"/snapshots/{snap.pk}/").content.decode()
    assert f'data-export="{job.pk}" data-status="queued" data-url="/api/v1/exports/{job.pk}/"' in html
    assert "js/snapshots.js" in html and f'aria-label="Export {job.pk} progress"' in html


def test_a_queued_snapshot_page_polls_and_cannot_export_yet(curator):
    snap = snapshots.snapshot_create(spec=accepted_spec(images=1), name="q", created_by=curator)
    html = client_as(curator).get(f"/snapshots/{snap.pk}/").content.decode()
    assert f'data-status="queued" data-url="/api/v1/snapshots/{snap.pk}/"' in html
    assert 'disabled title="The snapshot is not built yet"' in html and "Rebuild check" not in html


def test_rebuild_check_button_reports_a_match_and_a_tampered_item(curator):
    snap = factories.make_snapshot(spec=accepted_spec(images=2), name="rc", created_by=curator)
    client = client_as(curator)
    page = text(client.post(f"/snapshots/{snap.pk}/rebuild-check/", follow=True))
    assert f"Rebuild check passed: 2 items hash to {snap.content_hash[:12]}" in page
    SnapshotItem.objects.filter(snapshot=snap).update(split="test")
    page = text(client.post(f"/snapshots/{snap.pk}/rebuild-check/", follow=True))
    assert "Rebuild check FAILED" in page and f"not the recorded {snap.content_hash[:12]}" in page


@pytest.mark.parametrize("role", [roles.ANNOTATOR, roles.REVIEWER, roles.VENDOR_MANAGER])
def test_vendor_users_get_404_on_every_snapshot_page(curator, role):
    snap = factories.make_snapshot(spec=accepted_spec(images=1), name="secret", created_by=curator)
    client = client_as(factories.make_user(role))
    for url in ("/snapshots/", "/snapshots/new/", f"/snapshots/{snap.pk}/"):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/snapshots/{snap.pk}/exports/", {"format": "coco"}).status_code == 404
    assert client.post(f"/snapshots/{snap.pk}/rebuild-check/").status_code == 404
    assert not Export.objects.exists()
    assert "Snapshots" not in text(client.get("/guides/"))


def test_model_team_cannot_request_snapshots_and_anonymous_users_log_in_first(model_team):
    assert client_as(model_team).get("/snapshots/new/").status_code == 403
    r = Client().get("/snapshots/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")


def test_spec_page_and_navigation_link_to_the_snapshots(curator, model_team, spec):
    html = client_as(curator).get(f"/specs/{spec.pk}/").content.decode()
    assert f'href="/snapshots/?spec={spec.pk}"' in html
    assert 'href="/snapshots/"' in client_as(model_team).get("/specs/").content.decode()
