"""Misses on the API answer as a script expects: JSON 404s, and a POST without the trailing
slash kept a POST (308) instead of being turned into a GET that lists and creates nothing."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from curation.models import Export

pytestmark = pytest.mark.django_db


def test_an_unknown_api_url_answers_json_404_and_a_page_stays_html(curator_api, client):
    for url in ("/api/v1/nope/", "/api/v1/exports/1/downlod/", "/api/v1/exports/999999/"):
        r = curator_api.get(url)
        assert r.status_code == 404 and r["Content-Type"] == "application/json", url
        assert r.json() == {"detail": "Not found."} or "detail" in r.json()
    r = client.get("/no-such-page/")
    assert r.status_code == 404 and r["Content-Type"].startswith("text/html")


def test_a_post_without_its_trailing_slash_is_redirected_keeping_the_method(curator, settings):
    from tests import factories
    from tests.curation.test_snapshots import accept_all

    spec = factories.make_spec()
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=1)
    accept_all(vendor)
    snapshot = factories.make_snapshot(spec=spec, name="s", created_by=curator)
    api = APIClient()
    api.force_authenticate(curator)
    r = api.post("/api/v1/exports?x=1", {"snapshot": snapshot.pk, "format": "jsonl"}, format="json")
    assert r.status_code == 308 and r["Location"] == "/api/v1/exports/?x=1"
    assert not Export.objects.exists()
    r = api.post(r["Location"], {"snapshot": snapshot.pk, "format": "jsonl"}, format="json")
    assert r.status_code in (201, 202) and Export.objects.count() == 1
    assert api.get("/api/v1/exports").status_code == 301  # a GET keeps Django's usual redirect
    assert api.post("/api/v1/no-such-thing", {}).status_code == 404
