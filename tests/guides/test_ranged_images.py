"""Guide example images and question crops: byte ranges, validators and HEAD, with vendor
isolation and takedowns unchanged (see tests/ranged.py)."""
from __future__ import annotations

import pytest
from django.core.files.storage import default_storage

from guides import services
from tests.ranged import assert_serves_ranges

pytestmark = pytest.mark.django_db

QUAD = [[20, 10], [180, 10], [180, 60], [20, 60]]
TAKEDOWN = {"reason_kind": "copyright", "reason": "Letter of 2026-03-02 from the publisher.",
            "requested_by": "Mirae Publishing Co."}


@pytest.fixture
def example(published, curator, example_image):
    v2 = services.guide_version_create(guide=published.guide, created_by=curator)
    added = services.guide_example_add(version=v2, image=example_image, kind="good", regions=[QUAD])
    services.guide_version_publish(version=v2, by=curator)
    return added


@pytest.fixture
def question(annotator_api, contract, example):
    resp = annotator_api.post("/api/v1/questions/", {"spec": contract.spec.id, "title": "Bar?", "body": "See.",
                                                      "guide_version": example.version_id,
                                                      "image": example.image_id, "region": QUAD}, format="json")
    assert resp.status_code == 201, resp.content
    return resp.json()


def test_an_example_image_resumes_and_revalidates(annotator_api, example):
    with default_storage.open(example.image.file, "rb") as fh:
        whole = fh.read()
    assert_serves_ranges(annotator_api, f"/api/v1/guide-examples/{example.pk}/image/", whole)
    resp = annotator_api.get(f"/api/v1/guide-examples/{example.pk}/image/")
    assert resp["Cache-Control"] == "private, max-age=300" and example.image.sha256 in resp["ETag"]


def test_an_example_overlay_resumes_and_revalidates(annotator_api, example):
    assert_serves_ranges(annotator_api, f"/api/v1/guide-examples/{example.pk}/overlay/")


def test_a_question_crop_and_overlay_resume_and_revalidate(annotator_api, question):
    assert question["crop_url"] == f"http://testserver/api/v1/questions/{question['id']}/crop/"  # absolute
    crop = assert_serves_ranges(annotator_api, question["crop_url"])
    assert crop[:3] == b"\xff\xd8\xff"
    assert_serves_ranges(annotator_api, f"/api/v1/questions/{question['id']}/overlay/")
    assert annotator_api.get(question["crop_url"])["Cache-Control"] == "private, max-age=300"


def test_a_foreign_vendor_still_gets_404_with_a_range(foreign_api, example, question):
    for url in (f"/api/v1/guide-examples/{example.pk}/image/", question["crop_url"]):
        for headers in ({"HTTP_RANGE": "bytes=0-10"}, {"HTTP_IF_NONE_MATCH": "*"}, {}):
            assert foreign_api.get(url, **headers).status_code == 404, (url, headers)


def test_a_taken_down_example_image_is_still_410_with_a_range(annotator_api, curator_api, example, question,
                                                              django_capture_on_commit_callbacks):
    urls = [f"/api/v1/guide-examples/{example.pk}/image/", question["crop_url"]]
    tags = [annotator_api.get(url)["ETag"] for url in urls]
    with django_capture_on_commit_callbacks(execute=True):
        resp = curator_api.post(f"/api/v1/images/{example.image_id}/takedown/", TAKEDOWN, format="json")
        assert resp.status_code == 201, resp.content
    for url, tag in zip(urls, tags, strict=True):
        for headers in ({"HTTP_RANGE": "bytes=0-10"}, {"HTTP_IF_NONE_MATCH": tag}):
            assert annotator_api.get(url, **headers).status_code == 410, (url, headers)
        assert annotator_api.head(url).status_code == 410
