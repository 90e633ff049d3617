"""A model upload over the size limit (POST /api/v1/model-versions/) is refused while it streams in.

Before: Django wrote every file part whole to a temporary file (or memory) before the view ran, and
only then did the view compare `upload.size` with the limit: a 5 GB "model" cost 5 GB of disk before
its 400. Now (common/uploads.py) nothing past the limit is kept, the partial file is deleted, later
parts are not stored at all, and a request whose Content-Length is over what its files may add up to
is refused before its body is read. The 400 names the field and says both sizes; nothing is stored.

The limit is `pipeline.services.MAX_UPLOAD_BYTES`, shrunk here so that no test sends 200 MB."""
from __future__ import annotations

import io
import json

import pytest
import torch
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler
from django.test import RequestFactory
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from rest_framework.test import APIClient

from common import uploads
from pipeline import services
from pipeline.ml.detector import DetectorConfig, TinyUNet
from pipeline.models import ModelVersion
from tests.pipeline.test_model_upload_bad_input import _refused as refused

URL = "/api/v1/model-versions/"
LIMIT = 100_000  # more than one 64 KiB chunk, so a refusal mid-file is exercised
BIG = 1_000_000


def _detector_state() -> bytes:
    buf = io.BytesIO()
    torch.save(TinyUNet(DetectorConfig()).state_dict(), buf)
    return buf.getvalue()


def _fields(**over) -> dict:
    data = {"kind": "detector", "name": "team-unet", "version": "1", "format": "state_dict",
            "file": SimpleUploadedFile("w.pt", b"\0" * BIG),
            "config": json.dumps(DetectorConfig().to_dict()), "training_licences": ["mit"]}
    data.update(over)
    return data


@pytest.fixture
def team_api(api, model_team):
    api.force_authenticate(model_team)
    api.raise_request_exception = False
    return api


@pytest.fixture
def limit(monkeypatch):
    monkeypatch.setattr(services, "MAX_UPLOAD_BYTES", LIMIT)
    return LIMIT


def spy_on_kept(monkeypatch) -> list[list]:
    """What Django's own upload handlers are given to keep, as [field, bytes] per file part (to a
    temporary file or to memory, whichever this request's handler is). Shared with
    tests/curation/test_upload_streaming_limit.py."""
    parts: list[list] = []
    for cls in (TemporaryFileUploadHandler, MemoryFileUploadHandler):
        real_new, real_chunk = cls.new_file, cls.receive_data_chunk

        def new_file(self, field_name, *args, _real=real_new, _cls=cls, **kwargs):
            # the memory handler, when it takes the request's files, stops the chain in new_file
            if _cls is TemporaryFileUploadHandler or self.activated:
                parts.append([field_name, 0])
            _real(self, field_name, *args, **kwargs)

        def receive_data_chunk(self, raw_data, start, _real=real_chunk, _cls=cls):
            if _cls is TemporaryFileUploadHandler or self.activated:
                parts[-1][1] += len(raw_data)
            return _real(self, raw_data, start)

        monkeypatch.setattr(cls, "new_file", new_file)
        monkeypatch.setattr(cls, "receive_data_chunk", receive_data_chunk)
    return parts


@pytest.fixture
def kept(monkeypatch):
    return spy_on_kept(monkeypatch)


def _refused(resp, field: str, says: str) -> None:
    refused(resp, field, None, says)


@pytest.mark.django_db
@pytest.mark.parametrize("on_disk", [True, False], ids=["temporary-file", "memory"])
def test_a_file_over_the_limit_is_not_kept_past_the_limit(team_api, limit, kept, settings, tmp_path, on_disk):
    """Before: all 1,000,000 bytes were written (to a temporary file, or to memory for a small request)."""
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0 if on_disk else 10 * BIG
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "uploads")
    (tmp_path / "uploads").mkdir()
    resp = team_api.post(URL, _fields(), format="multipart")
    _refused(resp, "file", f"the file is {BIG:,} bytes; at most {LIMIT:,} bytes")
    assert len(kept) == 1 and kept[0][0] == "file" and 0 < kept[0][1] <= LIMIT, kept
    assert list((tmp_path / "uploads").iterdir()) == []


@pytest.mark.django_db
def test_the_parts_after_a_refused_file_are_not_stored_at_all(team_api, limit, kept, settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    resp = team_api.post(URL, _fields(refiner_file=SimpleUploadedFile("r.pt", b"\1" * 1000)), format="multipart")
    _refused(resp, "file", f"the file is {BIG:,} bytes")
    assert [field for field, _ in kept] == ["file"], kept


@pytest.mark.django_db
def test_a_side_model_over_the_limit_is_refused_naming_it(team_api, limit, kept, settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    fields = _fields(file=SimpleUploadedFile("w.pt", b"\0" * 1000), refiner_file=SimpleUploadedFile("r.pt", b"\1" * BIG))
    _refused(team_api.post(URL, fields, format="multipart"), "refiner_file",
             f"the file is {BIG:,} bytes; at most {LIMIT:,} bytes")
    assert kept == [["file", 1000], ["refiner_file", kept[1][1]]] and kept[1][1] <= LIMIT, kept


@pytest.mark.django_db
def test_a_session_login_is_refused_the_same_way(model_team, limit, kept, settings):
    """SessionAuthentication's CSRF check reads request.POST while DRF authenticates, before the
    view's own code runs: the limit must already be in place then."""
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    client = APIClient(enforce_csrf_checks=True)
    client.raise_request_exception = False
    client.force_login(model_team)
    client.cookies["csrftoken"] = "a" * 32
    resp = client.post(URL, _fields(), format="multipart", headers={"X-CSRFToken": "a" * 32})
    _refused(resp, "file", f"the file is {BIG:,} bytes")
    assert len(kept) == 1 and kept[0][1] <= LIMIT, kept


class Body(io.BytesIO):
    """The request body, counting what was read of it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.read_bytes = 0

    def read(self, size=-1, /):
        data = super().read(size)
        self.read_bytes += len(data)
        return data

    def readline(self, size=-1, /):
        data = super().readline(size)
        self.read_bytes += len(data)
        return data


@pytest.mark.django_db
def test_a_request_longer_than_its_files_may_add_up_to_is_refused_before_it_is_read(team_api, limit):
    """Content-Length says 1 GB: three files of at most LIMIT bytes and the form's fields cannot make that.
    Before: the body was read (here, 2 KB of it, as the test only has that much)."""
    body = encode_multipart(BOUNDARY, _fields(file=SimpleUploadedFile("w.pt", b"\0" * 1000)))
    stream = Body(body)
    declared = 10**9
    resp = team_api.generic("POST", URL, body, content_type=MULTIPART_CONTENT,
                            **{"CONTENT_LENGTH": str(declared), "wsgi.input": stream})
    _refused(resp, "file", f"the request is {declared:,} bytes; at most ")
    assert stream.read_bytes == 0


@pytest.mark.django_db
def test_a_file_of_exactly_the_limit_still_uploads(team_api, monkeypatch, settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    weights = _detector_state()
    monkeypatch.setattr(services, "MAX_UPLOAD_BYTES", len(weights))
    resp = team_api.post(URL, _fields(file=SimpleUploadedFile("w.pt", weights)), format="multipart")
    assert resp.status_code == 201, resp.content[:500]
    assert ModelVersion.objects.filter(source="upload").count() == 1


# ---------------------------------------------------------------- the handler itself (common/uploads.py)

def _django_request(fields: dict, *, settings, tmp_path):
    """A plain Django request (no DRF) whose files go to temporary files under tmp_path."""
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    return RequestFactory().post("/upload/", fields)


def test_the_partial_temporary_file_is_deleted_as_the_limit_is_passed(settings, tmp_path):
    """Deleted while the rest of the part streams in, not once the part (or the request) ends."""
    exists_at_part_end = []

    class Watching(uploads.StreamingSizeLimit):
        def file_complete(self, file_size):
            exists_at_part_end.append(sorted(p.name for p in tmp_path.iterdir()))
            return super().file_complete(file_size)

    request = _django_request({"archive": SimpleUploadedFile("a.zip", b"\0" * BIG), "note": "kept"},
                              settings=settings, tmp_path=tmp_path)
    request.upload_handlers = [Watching(request, max_file_bytes=LIMIT, max_body_bytes=None, body_field="archive",
                                        max_files=1), *request.upload_handlers]
    assert "archive" not in request.FILES
    assert exists_at_part_end == [[]]
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValidationError) as refused:
        uploads.raise_if_refused(request)
    assert refused.value.message_dict == {"archive": [uploads.too_big(size=BIG, limit=LIMIT)]}


def test_files_within_the_limit_pass_through_whole(settings, tmp_path):
    request = _django_request({"file": SimpleUploadedFile("w.pt", b"\1" * LIMIT),
                               "refiner_file": SimpleUploadedFile("r.pt", b"\2" * 10), "name": "x"},
                              settings=settings, tmp_path=tmp_path)
    uploads.limit_upload_sizes(request, max_file_bytes=LIMIT, file_fields=["file", "refiner_file"])
    uploads.raise_if_refused(request)
    assert request.FILES["file"].read() == b"\1" * LIMIT
    assert request.FILES["refiner_file"].read() == b"\2" * 10
    assert request.POST["name"] == "x"


def test_a_body_refused_by_its_length_names_the_only_file_field(settings, tmp_path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    request = _django_request({"archive": SimpleUploadedFile("a.zip", b"\0" * 10)}, settings=settings,
                              tmp_path=tmp_path)
    most = LIMIT + 1000 + uploads.FORM_OVERHEAD_BYTES
    request.META["CONTENT_LENGTH"] = str(most + 1)
    uploads.limit_upload_sizes(request, max_file_bytes=LIMIT, file_fields=["archive"])
    with pytest.raises(ValidationError) as refused:
        uploads.raise_if_refused(request)
    assert refused.value.message_dict == {"archive": [
        f"the request is {most + 1:,} bytes; at most {most:,} bytes are accepted (1 file(s) of at most "
        f"{LIMIT:,} bytes (0 MB) each, and the other fields)"]}


def test_the_limit_cannot_be_set_once_the_body_was_parsed(settings, tmp_path):
    request = _django_request({"file": SimpleUploadedFile("w.pt", b"\0")}, settings=settings, tmp_path=tmp_path)
    request.FILES  # noqa: B018
    with pytest.raises(AttributeError):
        uploads.limit_upload_sizes(request, max_file_bytes=LIMIT, file_fields=["file"])
