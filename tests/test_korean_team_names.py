"""A Korean team's names through every path: zips made on Korean Windows (CP949 names
without the zip's UTF-8 flag) or on a Mac (UTF-8 without the flag, Hangul decomposed),
NFD uploads, downloads named in Hangul, CSV for Korean Excel, Hangul in LaTeX, search."""
from __future__ import annotations

import csv
import io
import tarfile
import unicodedata
import zipfile
from urllib.parse import unquote

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from common import latex, roles
from common.archives import iter_members, zip_member_name
from common.downloads import ascii_fallback, content_disposition
from curation import services as cs
from curation.importers import image_items
from curation.models import DatasetSpec, Image
from tests import factories
from tests.factories import png_bytes

NAME = "수식/넓이 1.png"  # "formula/area 1.png"
NFD = unicodedata.normalize("NFD", NAME)


class _RawNameInfo(zipfile.ZipInfo):
    """A ZipInfo written with the raw name bytes given and no UTF-8 flag, as Windows'
    "Compressed folder" on a Korean system (CP949) or macOS's Archive Utility (UTF-8) do."""

    def __init__(self, raw: bytes, extra: bytes = b""):
        super().__init__(raw.decode("cp437"))  # how Python itself will read the name back
        self._raw = raw
        self.extra = extra

    def _encodeFilenameFlags(self):  # noqa: N802 - zipfile's own name
        return self._raw, self.flag_bits & ~0x800


def legacy_zip(members: dict[bytes, bytes], extras: dict[bytes, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for raw, data in members.items():
            zf.writestr(_RawNameInfo(raw, (extras or {}).get(raw, b"")), data)
    return buf.getvalue()


def _unicode_path_field(raw: bytes, name: str) -> bytes:
    import struct
    import zlib

    body = b"\x01" + struct.pack("<L", zlib.crc32(raw)) + name.encode()
    return struct.pack("<HH", 0x7075, len(body)) + body


# ------------------------------------------------------------------ zip member names


def test_the_test_zip_really_holds_cp949_without_the_utf8_flag():
    data = legacy_zip({NAME.encode("cp949"): b"x"})
    info = zipfile.ZipFile(io.BytesIO(data)).infolist()[0]
    assert not info.flag_bits & 0x800
    assert info.filename != NAME and info.filename == NAME.encode("cp949").decode("cp437")  # Python's mojibake


@pytest.mark.parametrize("raw, meant", [
    (NAME.encode("cp949"), NAME),                         # Korean Windows
    (NFD.encode("utf-8"), NAME),                          # macOS: UTF-8, no flag, decomposed
    (b"caf\x82.png", "café.png"),                         # real CP437 that is no CP949 stays CP437
    (b"plain/ascii.png", "plain/ascii.png"),
])
def test_zip_member_names_come_out_as_meant(raw, meant):
    info = zipfile.ZipFile(io.BytesIO(legacy_zip({raw: b"x"}))).infolist()[0]
    assert zip_member_name(info) == meant


def test_a_flagged_utf8_name_is_kept_and_composed():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(NFD, b"x")  # Python sets the UTF-8 flag itself
    info = zipfile.ZipFile(buf).infolist()[0]
    assert info.flag_bits & 0x800 and zip_member_name(info) == NAME


def test_the_unicode_path_extra_field_wins_when_it_matches_the_name():
    raw = b"\xff\xfe.png"  # neither UTF-8 nor CP949
    data = legacy_zip({raw: b"x"}, extras={raw: _unicode_path_field(raw, "넓이.png")})
    assert zip_member_name(zipfile.ZipFile(io.BytesIO(data)).infolist()[0]) == "넓이.png"
    # a stale field (for another name) is ignored
    data = legacy_zip({raw: b"x"}, extras={raw: _unicode_path_field(b"other", "넓이.png")})
    assert zip_member_name(zipfile.ZipFile(io.BytesIO(data)).infolist()[0]) == raw.decode("cp437")


def test_archive_members_and_importer_items_are_named_right(tmp_path, settings):
    z = tmp_path / "windows.zip"
    z.write_bytes(legacy_zip({NAME.encode("cp949"): png_bytes(), "맥/그림.png".encode("cp949"): png_bytes(seed=2)}))
    assert [m.name for m in iter_members(z, {".png"})] == [NAME, "맥/그림.png"]
    assert [it.meta["path"] for it in image_items(z)] == [NAME, "맥/그림.png"]
    # a folder copied from a Mac keeps NFD names on disk; a tar made on Korean Windows holds CP949
    folder = tmp_path / "folder"
    (folder / unicodedata.normalize("NFD", "수식")).mkdir(parents=True)
    (folder / NFD).write_bytes(b"x")
    assert [m.name for m in iter_members(folder, {".png"})] == [NAME]
    t = tmp_path / "korean.tar"
    with tarfile.open(t, "w", format=tarfile.GNU_FORMAT, encoding="cp949") as tf:
        info = tarfile.TarInfo(NAME)
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    assert [m.name for m in iter_members(t, {".png"})] == [NAME]


@pytest.mark.django_db
def test_a_korean_windows_zip_import_job_stores_korean_names(curator_api, spec, source,
                                                              django_capture_on_commit_callbacks):
    data = legacy_zip({NAME.encode("cp949"): png_bytes(), "수식/깨진.png".encode("cp949"): b"not an image"})
    with django_capture_on_commit_callbacks(execute=True):
        r = curator_api.post("/api/v1/import-jobs/", {"spec": spec.id, "source": source.id,
                                                      "archive": SimpleUploadedFile("사진.zip", data)},
                             format="multipart")
    assert r.status_code == 201, r.content
    job = curator_api.get(f"/api/v1/import-jobs/{r.json()['id']}/").json()
    assert (job["status"], job["imported"]) == ("done", 1), job
    assert [e["file"] for e in job["errors"]] == ["수식/깨진.png"]
    assert list(Image.objects.filter(spec=spec).values_list("original_filename", flat=True)) == ["넓이 1.png"]


@pytest.mark.django_db
def test_iter_image_files_reads_a_mac_zip_in_nfc(tmp_path):
    z = tmp_path / "mac.zip"
    z.write_bytes(legacy_zip({NFD.encode("utf-8"): png_bytes()}))
    assert [name for name, _ in cs.iter_image_files(z)] == [NAME]


# ------------------------------------------------------------------ NFD uploads


@pytest.mark.django_db
def test_an_upload_from_a_mac_is_stored_in_nfc_and_found_by_typed_names(curator_api, spec, source):
    session = unicodedata.normalize("NFD", "3학년 2반")
    r = curator_api.post("/api/v1/images/", {"spec": spec.id, "source": source.id, "capture_session": session,
                                             "file": SimpleUploadedFile(unicodedata.normalize("NFD", "넓이.png"),
                                                                        png_bytes())},
                         format="multipart")
    assert r.status_code == 201, r.content
    image = Image.objects.get(pk=r.json()["id"])
    assert (image.original_filename, image.capture_session) == ("넓이.png", "3학년 2반")
    found = curator_api.get("/api/v1/images/", {"capture_session": "3학년 2반"}).json()["results"]
    assert [i["id"] for i in found] == [image.id]
    cs.image_update(image=image, capture_session=unicodedata.normalize("NFD", "3학년 3반"))
    image.refresh_from_db()
    assert image.capture_session == "3학년 3반"


# ------------------------------------------------------------------ downloads


def test_content_disposition_has_an_ascii_fallback_and_the_utf8_name():
    value = content_disposition("spec-1-수식 인식-coco.zip")
    fallback = value.split('filename="', 1)[1].split('"', 1)[0]
    assert fallback.isascii() and fallback.endswith("-coco.zip") and fallback.startswith("spec-1-")
    assert unquote(value.split("filename*=UTF-8''", 1)[1]) == "spec-1-수식 인식-coco.zip"
    value.encode("latin-1")  # a legal header value
    assert content_disposition("mathset-costs.csv") == 'attachment; filename="mathset-costs.csv"'
    assert ascii_fallback("수식.zip") == "download.zip" and ascii_fallback("Ré.zip") == "Re.zip"


@pytest.mark.django_db
def test_an_export_of_a_korean_snapshot_downloads_under_its_korean_name(curator, django_capture_on_commit_callbacks):
    from curation import snapshots
    from tests.curation.test_snapshots import accepted_spec

    spec = accepted_spec(images=1, intended_use=DatasetSpec.IntendedUse.RESEARCH)
    snap = factories.make_snapshot(spec=spec, name="수식 인식 1차")
    with django_capture_on_commit_callbacks(execute=True):
        job = snapshots.export_create(snapshot=snap, format="jsonl", created_by=curator)
    api = APIClient()
    api.force_authenticate(curator)
    r = api.get(f"/api/v1/exports/{job.pk}/download/")
    assert r.status_code == 200
    disposition = r["Content-Disposition"]
    assert 'filename="' in disposition, disposition  # what curl -OJ reads
    assert disposition.split('filename="', 1)[1].split('"')[0].endswith("-jsonl.zip")
    assert unquote(disposition.split("''", 1)[1]) == f"{spec.slug}-수식 인식 1차-jsonl.zip"


# ------------------------------------------------------------------ CSV for Korean Excel


@pytest.mark.django_db
def test_cost_report_csv_is_utf8_with_bom_and_korean_names_survive():
    vendor = factories.make_vendor("주식회사 라벨")
    spec = factories.make_spec(name="수식 인식")
    factories.make_contract(vendor=vendor, spec=spec)
    factories.make_batch(spec, vendor, images=1, name="=1차 배치")
    curator = factories.make_user(roles.CURATOR)
    page = Client()
    page.force_login(curator)
    api = APIClient()
    api.force_authenticate(curator)
    for r in (page.get("/contracts/report/?download=csv"), api.get("/api/v1/cost-report/csv/")):
        assert r.status_code == 200
        assert r.content.startswith(b"\xef\xbb\xbf"), r.content[:20]  # what makes Excel read UTF-8
        assert r["Content-Type"] == "text/csv; charset=utf-8"
        cells = [c for row in csv.reader(io.StringIO(r.content.decode("utf-8-sig"))) for c in row]
        assert cells[0] == "section"
        assert "주식회사 라벨" in cells and "수식 인식" in cells and "'=1차 배치" in cells


# ------------------------------------------------------------------ LaTeX with Hangul


def test_hangul_inside_text_survives_normalisation_as_syllables():
    assert latex.check(r"S=\text{넓이}\,\mbox{cm}^2") == []
    assert latex.normalize(r"S=\text{넓이}\mbox{cm}^2") == r"S = \mathrm { 넓 이 } \mathrm { c m } ^ { 2 }"
    # a Mac's decomposed jamo are the same tokens, so the same answer
    decomposed = unicodedata.normalize("NFD", r"\text{넓이}")
    assert latex.tokenize(decomposed) == ["\\text", "{", "넓", "이", "}"]
    assert latex.exact_match(decomposed, r"\text{넓이}")
    assert latex.token_edit_distance(decomposed, r"\text{넓이}") == 0.0


def test_hangul_in_math_mode_is_accepted_as_the_labeling_preview_renders_it():
    # KaTeX renders it (the labeling page's preview runs with strict: "ignore"), so the server accepts it too.
    problems, normalized = latex.check_and_normalize("넓이=3")
    assert problems == [] and normalized == "넓 이 = 3"


@pytest.mark.django_db
def test_an_annotation_with_hangul_in_text_is_saved():
    from labeling.services import regions_clean

    image = factories.make_image()
    decomposed = unicodedata.normalize("NFD", r"\text{넓이}=3")
    regions = regions_clean(regions=[factories.quad(latex=decomposed)], image=image)
    assert regions[0]["latex_normalized"] == r"\mathrm { 넓 이 } = 3"


# ------------------------------------------------------------------ search


@pytest.mark.django_db
def test_searching_korean_names_finds_specs_vendors_and_batches(curator_api):
    spec = factories.make_spec(name="수식 인식")
    factories.make_spec(name="Other")
    vendor = factories.make_vendor("주식회사 라벨")
    batch = factories.make_batch(spec, vendor, images=1, name="1차 배치")
    assert [s["id"] for s in curator_api.get("/api/v1/specs/", {"q": "수식"}).json()["results"]] == [spec.id]
    assert [b["id"] for b in curator_api.get("/api/v1/batches/", {"q": "배치"}).json()["results"]] == [batch.id]
    page = Client()
    page.force_login(factories.make_user(roles.CURATOR))
    assert "주식회사 라벨" in page.get("/people/vendors/").content.decode()
