"""The API's links are absolute URLs (curation/api): a model team's script downloads what
`download_url` and `file_url` name as they are, without knowing where the API is served; and
the export formats are an enum in the schema, so a generated client can offer them."""
from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from common import services
from curation.exporters import FORMATS
from curation.models import DatasetSpec
from tests import factories
from tests.curation.test_snapshots import accepted_spec
from tests.schema import assert_response_matches_schema

pytestmark = pytest.mark.django_db

BASE = "http://testserver/"


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {services.api_token_rotate(user=user).key}")
    return client


def test_export_download_url_is_absolute_and_downloads(curator, model_team, django_capture_on_commit_callbacks):
    spec = accepted_spec(images=2, intended_use=DatasetSpec.IntendedUse.RESEARCH)
    snapshot = factories.make_snapshot(spec=spec, name="urls", created_by=curator)
    team = token_client(model_team)
    with django_capture_on_commit_callbacks(execute=True):
        r = team.post("/api/v1/exports/", {"snapshot": snapshot.pk, "format": "jsonl"}, format="json")
    assert r.status_code == 201, r.content
    export_id = r.json()["id"]

    for r in (team.get(f"/api/v1/exports/{export_id}/"), team.get("/api/v1/exports/")):
        assert r.status_code == 200
        assert_response_matches_schema(r)
    job = team.get(f"/api/v1/exports/{export_id}/").json()
    assert job["status"] == "done"
    assert job["download_url"] == f"{BASE}api/v1/exports/{export_id}/download/"
    assert team.get("/api/v1/exports/").json()["results"][0]["download_url"] == job["download_url"]
    download = team.get(job["download_url"])
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    assert b"".join(download.streaming_content).startswith(b"PK")


def test_image_file_and_thumbnail_urls_are_absolute_and_download(curator, spec, source):
    image = factories.make_image(spec=spec, source=source)
    api = token_client(curator)
    for r in (api.get(f"/api/v1/images/{image.pk}/"), api.get("/api/v1/images/")):
        assert r.status_code == 200
        assert_response_matches_schema(r)
    body = api.get(f"/api/v1/images/{image.pk}/").json()
    assert body["file_url"] == f"{BASE}api/v1/images/{image.pk}/file/"
    assert body["thumbnail_url"] == f"{BASE}api/v1/images/{image.pk}/thumbnail/"
    assert api.get("/api/v1/images/").json()["results"][0]["file_url"] == body["file_url"]
    file = api.get(body["file_url"])
    assert file.status_code == 200 and file["Content-Type"] == "image/png"
    assert api.get(body["thumbnail_url"]).status_code == 200


def test_absolute_urls_follow_the_host_the_client_used(curator, spec, source):
    image = factories.make_image(spec=spec, source=source)
    api = token_client(curator)
    body = api.get(f"/api/v1/images/{image.pk}/", HTTP_HOST="localhost").json()
    assert body["file_url"] == f"http://localhost/api/v1/images/{image.pk}/file/"


def _schema(api) -> dict:
    r = api.get("/api/schema/?format=json")
    assert r.status_code == 200
    return json.loads(r.content)


def _resolve(schema: dict, prop: dict) -> dict:
    """A property's schema, following an allOf/$ref to a component."""
    for ref in [prop.get("$ref")] + [p.get("$ref") for p in prop.get("allOf", [])]:
        if ref:
            return schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return prop


def test_schema_documents_urls_as_uris(curator_api):
    schema = _schema(curator_api)
    components = schema["components"]["schemas"]
    for component, field in [("Export", "download_url"), ("Image", "file_url"), ("Image", "thumbnail_url")]:
        prop = components[component]["properties"][field]
        assert prop["type"] == "string" and prop["format"] == "uri", (component, field, prop)
        assert prop.get("readOnly") is True
    assert components["Export"]["properties"]["download_url"].get("nullable") is True


def test_schema_shows_the_export_formats_as_an_enum(curator_api):
    schema = _schema(curator_api)
    components = schema["components"]["schemas"]
    request_format = _resolve(schema, components["ExportCreateRequest"]["properties"]["format"])
    assert set(request_format["enum"]) == set(FORMATS)
    response_format = _resolve(schema, components["Export"]["properties"]["format"])
    assert set(response_format["enum"]) == set(FORMATS)
    (param,) = [p for p in schema["paths"]["/api/v1/exports/"]["get"]["parameters"] if p["name"] == "format"]
    assert set(_resolve(schema, param["schema"])["enum"]) == set(FORMATS)


def test_unknown_export_format_is_still_a_400_naming_format(curator, model_team):
    spec = accepted_spec(images=1, intended_use=DatasetSpec.IntendedUse.RESEARCH)
    snapshot = factories.make_snapshot(spec=spec, name="bad", created_by=curator)
    r = token_client(model_team).post("/api/v1/exports/", {"snapshot": snapshot.pk, "format": "tar"}, format="json")
    assert r.status_code == 400 and "format" in r.json()
