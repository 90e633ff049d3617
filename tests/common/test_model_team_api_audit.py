"""A model team pulling data through the REST API with a token: what it reads matches the schema,
documented filters filter, and downloads and pages behave as the README says."""
from __future__ import annotations

import io
import json
import zipfile

import pytest
from rest_framework.test import APIClient

from common import services
from curation.models import DatasetSpec
from curation.reader import ExportDataset
from tests import factories
from tests.curation.test_snapshots import accepted_spec
from tests.schema import assert_response_matches_schema

pytestmark = [pytest.mark.django_db,
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]


def token_client(user) -> APIClient:
    """A client that authenticates as a model team's script does: with an issued API key."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {services.api_token_rotate(user=user).key}")
    return client


@pytest.fixture
def ready(curator, model_team, django_capture_on_commit_callbacks):
    """A ready snapshot with one finished export per format, made through the API."""
    spec = accepted_spec(images=4, intended_use=DatasetSpec.IntendedUse.RESEARCH)
    cur = token_client(curator)
    with django_capture_on_commit_callbacks(execute=True):
        r = cur.post("/api/v1/snapshots/", {"spec": spec.pk, "name": "audit", "ratios": [1, 0, 1]}, format="json")
    assert r.status_code in (201, 202), r.content
    snap_id = r.json()["id"]
    team = token_client(model_team)
    exports = {}
    for fmt in ("coco", "yolo-obb", "im2latex", "jsonl", "label-studio", "icdar2015"):
        with django_capture_on_commit_callbacks(execute=True):
            r = team.post("/api/v1/exports/", {"snapshot": snap_id, "format": fmt}, format="json")
        assert r.status_code == 201, r.content
        assert_response_matches_schema(r)
        exports[fmt] = {**r.json(), "download_url": f"/api/v1/exports/{r.json()['id']}/download/"}
    return {"spec": spec, "snapshot": snap_id, "exports": exports, "team": team}


def test_format_filters_filter_instead_of_answering_404(ready, source):
    """`format` is a documented filter of exports and images; DRF took it as a renderer override
    and answered every such request 404 "Not found"."""
    team = ready["team"]
    r = team.get("/api/v1/exports/?format=jsonl")
    assert r.status_code == 200, r.content
    assert [e["format"] for e in r.json()["results"]] == ["jsonl"]
    assert_response_matches_schema(r)
    assert team.get("/api/v1/exports/?format=nope").status_code == 400
    factories.make_image(spec=ready["spec"], source=source, data=factories.png_bytes(fmt="JPEG"))
    r = team.get(f"/api/v1/images/?spec={ready['spec'].pk}&format=JPEG")
    assert r.status_code == 200, r.content
    assert r.json()["count"] == 1 and r.json()["results"][0]["format"] == "JPEG"
    r = team.get(f"/api/v1/images/{r.json()['results'][0]['id']}/near-duplicates/?format=PNG")
    assert r.status_code == 200, r.content
    # The schema itself is still served as JSON on request.
    assert json.loads(team.get("/api/schema/?format=json").content)["openapi"].startswith("3.")


def test_model_team_walk_matches_the_schema(ready):
    team, snap = ready["team"], ready["snapshot"]
    for url in ["/api/v1/specs/", "/api/v1/snapshots/", f"/api/v1/snapshots/{snap}/",
                f"/api/v1/snapshots/{snap}/items/?split=test", f"/api/v1/snapshots/{snap}/rebuild-check/",
                "/api/v1/exports/", f"/api/v1/exports/{ready['exports']['coco']['id']}/",
                f"/api/v1/images/?spec={ready['spec'].pk}&limit=2", "/api/v1/model-versions/",
                "/api/v1/evaluations/", "/api/v1/predictions/", "/api/v1/users/me/"]:
        r = team.get(url)
        assert r.status_code == 200, (url, r.content)
        assert_response_matches_schema(r)


def test_every_export_downloads_with_a_filename_and_length_and_reads_back(ready):
    team = ready["team"]
    for fmt, job in ready["exports"].items():
        job = team.get(f"/api/v1/exports/{job['id']}/").json()
        assert job["status"] == "done" and job["download_url"], fmt
        r = team.get(job["download_url"])
        assert r.status_code == 200 and r.streaming, fmt
        body = b"".join(r.streaming_content)
        assert int(r["Content-Length"]) == len(body) == job["size"], fmt
        assert r["Content-Disposition"].startswith("attachment; filename=") and fmt in r["Content-Disposition"]
        names = zipfile.ZipFile(io.BytesIO(body)).namelist()
        assert {"LICENSES.json", "ATTRIBUTION.md", "PROVENANCE.jsonl"} <= set(names), fmt


def test_coco_and_jsonl_exports_read_with_the_reader_and_pycocotools(ready, tmp_path):
    from pycocotools.coco import COCO

    team = ready["team"]
    for fmt in ("coco", "jsonl"):
        path = tmp_path / f"{fmt}.zip"
        path.write_bytes(b"".join(team.get(ready["exports"][fmt]["download_url"]).streaming_content))
        assert len(ExportDataset(path, split="train")) + len(ExportDataset(path, split="test")) == 4
        image, target = ExportDataset(path)[0]
        assert image.shape[0] == 3 and target["latex"]
    path = tmp_path / "crops.zip"
    path.write_bytes(b"".join(team.get(ready["exports"]["im2latex"]["download_url"]).streaming_content))
    assert len(ExportDataset(path, mode="crops")) == 4
    with zipfile.ZipFile(tmp_path / "coco.zip") as z:
        for name in z.namelist():
            if name.startswith("annotations/"):
                (tmp_path / "ann.json").write_bytes(z.read(name))
                coco = COCO(str(tmp_path / "ann.json"))
                assert all("latex" in a for a in coco.loadAnns(coco.getAnnIds()))


def test_pagination_next_links_are_absolute_and_walk_every_row(ready):
    team, seen = ready["team"], []
    url = f"/api/v1/images/?spec={ready['spec'].pk}&limit=3"
    while url:
        body = team.get(url).json()
        seen += [i["id"] for i in body["results"]]
        url = body["next"]
        assert url is None or url.startswith("http://testserver/api/v1/images/")
    assert len(seen) == len(set(seen)) == body["count"] == 4


def test_auth_errors_are_json_401_403_404(ready, annotator):
    job = ready["exports"]["coco"]
    anon = APIClient()
    r = anon.get(job["download_url"])
    assert r.status_code == 401 and r["WWW-Authenticate"] == "Token" and "detail" in r.json()
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token mst_not-a-key")
    assert bad.get("/api/v1/exports/").status_code == 401
    vendor_user = token_client(annotator)
    assert vendor_user.get(job["download_url"]).status_code == 404  # not theirs: not found
    r = ready["team"].post("/api/v1/snapshots/", {"spec": ready["spec"].pk, "name": "x"}, format="json")
    assert r.status_code == 403 and "detail" in r.json()
    r = ready["team"].post("/api/v1/exports/", {"snapshot": ready["snapshot"], "format": "tar"}, format="json")
    assert r.status_code == 400 and "format" in r.json()



def test_detail_actions_document_only_the_parameters_they_read_and_the_shape_they_answer(ready):
    """near-duplicates answers a plain list and reads only max_distance; snapshot items read only
    split and the page. The schema offered the list filters (ignored) and a paginated envelope."""
    team = ready["team"]
    image = team.get(f"/api/v1/images/?spec={ready['spec'].pk}&limit=1").json()["results"][0]["id"]
    r = team.get(f"/api/v1/images/{image}/near-duplicates/")
    assert r.status_code == 200 and isinstance(r.json(), list)
    assert_response_matches_schema(r)
    schema = json.loads(team.get("/api/schema/?format=json").content)

    def params(path):
        return {p["name"] for p in schema["paths"][path]["get"].get("parameters", [])}

    assert params("/api/v1/images/{id}/near-duplicates/") == {"id", "max_distance"}
    assert params("/api/v1/snapshots/{id}/items/") == {"id", "split", "limit", "offset", "cursor"}
    assert params("/api/v1/prelabel-jobs/{id}/failures/") == {"id", "limit", "offset", "cursor"}


def test_an_uploaded_model_version_matches_the_schema(model_team):
    """An upload has no endpoint URL (""): the schema's oneOf(uri, empty string) matched it twice,
    so every uploaded version failed validation in a strict client."""
    from tests.pipeline.test_pipeline_api import _upload

    team = token_client(model_team)
    r = _upload(team, activate="true")
    assert r.status_code == 201, r.content
    assert r.json()["endpoint_url"] == ""  # (the multipart request itself cannot be re-read to validate)
    for url in ["/api/v1/model-versions/", f"/api/v1/model-versions/{r.json()['id']}/"]:
        assert_response_matches_schema(team.get(url))
    assert_response_matches_schema(team.post(f"/api/v1/model-versions/{r.json()['id']}/activate/"))


def test_the_reader_refuses_a_split_name_no_export_has(ready, tmp_path):
    """`split="val"` (im2latex's own list is validate.lst) read as an empty dataset without a word."""
    team = ready["team"]
    for fmt, mode in (("coco", "images"), ("jsonl", "images"), ("im2latex", "crops")):
        path = tmp_path / f"{fmt}.zip"
        path.write_bytes(b"".join(team.get(ready["exports"][fmt]["download_url"]).streaming_content))
        for split in ("val", "valid", "Train"):
            with pytest.raises(ValueError, match="train, validation or test"):
                ExportDataset(path, split=split, mode=mode)
        assert len(ExportDataset(path, split="validation", mode=mode)) == 0  # a real split, empty here


def test_download_filename_is_safe_to_save_as_given(curator, model_team, django_capture_on_commit_callbacks):
    """`curl -OJ` saves under the Content-Disposition name: a snapshot named with a line break,
    quotes or path separators must not put them into the file's name."""
    from urllib.parse import unquote

    from curation import snapshots

    spec = accepted_spec(images=1, intended_use=DatasetSpec.IntendedUse.RESEARCH)
    snap = factories.make_snapshot(spec=spec, name='R\u00e9 "q";x\r\n..\\y/z:*?<>|')
    with django_capture_on_commit_callbacks(execute=True):
        job = snapshots.export_create(snapshot=snap, format="jsonl", created_by=curator)
    r = token_client(model_team).get(f"/api/v1/exports/{job.pk}/download/")
    assert r.status_code == 200
    disposition = r["Content-Disposition"]
    name = unquote(disposition.split("''", 1)[1]) if "filename*=" in disposition else disposition.split('"')[1]
    assert name.endswith("-jsonl.zip") and "R\u00e9" in name
    assert not any(c in name for c in '\r\n"\\/:*?<>|;'), name
