"""POST /api/v1/images/bulk/ answers one outcome per file, in request order, so that a client
(the upload page) never has to match results back to its files by name: names repeat across
folders, the stored name is cut to 255 characters, and a file may repeat another's bytes."""
from __future__ import annotations

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from curation import services
from curation.models import Image
from tests import factories
from tests.schema import openapi

pytestmark = pytest.mark.django_db

BULK = "/api/v1/images/bulk/"


def bulk(api, spec, source, files):
    payload = {"spec": spec.id, "source": source.id, "categories": ["printed"],
               "files": [SimpleUploadedFile(name, data) for name, data in files]}
    r = api.post(BULK, payload, format="multipart")
    assert r.status_code == 201, r.content
    assert_matches_schema(r)
    return r.json()


def assert_matches_schema(response) -> None:
    """tests.schema's helper re-reads the request body, which a multipart request has
    already consumed; the response alone is what is checked here."""
    from openapi_core.testing import MockRequest, MockResponse

    openapi().validate_response(
        MockRequest("http://testserver", "post", BULK, content_type="multipart/form-data"),
        MockResponse(response.content, status_code=response.status_code, content_type=response["Content-Type"]),
    )


def test_the_schema_check_is_not_vacuous(curator_api, spec, source):
    r = curator_api.post(BULK, {"spec": spec.id, "source": source.id,
                                "files": [SimpleUploadedFile("a.png", factories.png_bytes(seed=9001))]},
                         format="multipart")
    assert r.status_code == 201
    r.content = r.content.replace(b'"created":[', b'"created":"not a list","was":[', 1)
    with pytest.raises(Exception):  # noqa: B017, PT011 - any validation error will do
        assert_matches_schema(r)


def outcomes(body):
    return [(f["index"], f["filename"], f["outcome"], f["image"]["id"]) for f in body["files"]]


def test_same_name_duplicate_first_then_new_each_get_their_own_outcome(curator_api, spec, source):
    existing = factories.make_image(spec=spec, source=source, filename="IMG_0001.jpg")
    with default_storage.open(existing.file, "rb") as fh:
        old_bytes = fh.read()
    new_bytes = factories.png_bytes(seed=9101)
    body = bulk(curator_api, spec, source, [("IMG_0001.jpg", old_bytes), ("IMG_0001.jpg", new_bytes)])
    new = Image.objects.get(spec=spec, sha256=services.decode_image(new_bytes, "x").sha256)
    assert outcomes(body) == [(0, "IMG_0001.jpg", "duplicate", existing.id), (1, "IMG_0001.jpg", "created", new.id)]
    assert [f["same_as"] for f in body["files"]] == [None, None]
    # The older lists are unchanged.
    assert [im["id"] for im in body["created"]] == [new.id]
    assert [(d["filename"], d["image"]["id"]) for d in body["duplicates"]] == [("IMG_0001.jpg", existing.id)]


def test_a_file_repeating_an_earlier_files_bytes_is_repeated_and_stored_once(curator_api, spec, source):
    same, other = factories.png_bytes(seed=9201), factories.png_bytes(seed=9202)
    body = bulk(curator_api, spec, source, [("first.png", same), ("other.png", other), ("again.png", same)])
    first, second, third = body["files"]
    assert (first["outcome"], second["outcome"], third["outcome"]) == ("created", "created", "repeated")
    assert third["image"]["id"] == first["image"]["id"] and third["same_as"] == 0
    assert third["filename"] == "again.png"
    assert Image.objects.filter(spec=spec).count() == 2
    # Existing clients still see the repeated file among the duplicates.
    assert [d["filename"] for d in body["duplicates"]] == ["again.png"]


def test_a_name_longer_than_the_stored_one_keeps_its_outcome(curator_api, spec, source):
    long_name = "x" * 300 + ".png"
    body = bulk(curator_api, spec, source, [(long_name, factories.png_bytes(seed=9301)),
                                            ("short.png", factories.png_bytes(seed=9302))])
    long, short = body["files"]
    assert (long["index"], long["outcome"], short["index"], short["outcome"]) == (0, "created", 1, "created")
    # Django cuts an uploaded name to 255 characters, keeping its extension: the page's
    # file.name is then no name the server answers with.
    assert long["filename"] != long_name and long["filename"].endswith(".png") and len(long["filename"]) == 255
    assert long["image"]["original_filename"] == long["filename"]
    assert short["image"]["original_filename"] == "short.png"


def test_a_repeat_of_a_file_a_concurrent_upload_stored_first_is_repeated_of_that_image(spec, source, monkeypatch):
    """Another upload stores the same bytes between the duplicate check and the insert: the
    first file becomes a duplicate of that image, and its repeat follows it (counted too)."""
    data = factories.png_bytes(seed=9401)
    theirs = factories.make_image(spec=spec, source=source, data=data, filename="theirs.png")
    real_filter, calls = Image.objects.filter, []

    def filter_missing_theirs(*args, **kwargs):  # the duplicate check ran before their commit
        calls.append(1)
        return Image.objects.none() if len(calls) == 1 else real_filter(*args, **kwargs)

    monkeypatch.setattr(Image.objects, "filter", filter_missing_theirs)
    result = services.images_ingest(spec=spec, source=source, files=[("mine.png", data), ("copy.png", data)])
    assert result.created == []
    assert sorted(name for name, _ in result.duplicates) == ["copy.png", "mine.png"]
    assert [(o.index, o.filename, o.outcome, o.image.id, o.same_as) for o in result.files] == [
        (0, "mine.png", "duplicate", theirs.id, None), (1, "copy.png", "repeated", theirs.id, 0)]
