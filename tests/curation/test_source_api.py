"""/api/v1/sources/ and /licences/: provenance and the licence catalogue."""
import json

import pytest

from curation.models import Licence, Source

pytestmark = pytest.mark.django_db


def test_licence_catalogue_has_every_family_with_flags(curator_api):
    codes = {lic["code"]: lic for lic in curator_api.get("/api/v1/licences/?limit=100").json()["results"]}
    for version in ("3.0", "4.0"):
        for kind in ("by", "by-sa", "by-nd", "by-nc", "by-nc-sa", "by-nc-nd"):
            assert f"cc-{kind}-{version}" in codes
    assert {"cc0-1.0", "kogl-1", "kogl-2", "kogl-3", "kogl-4", "public-law", "contract", "unknown"} <= set(codes)
    assert codes["cc-by-nc-sa-3.0"]["allows_commercial"] is False and codes["cc-by-nc-sa-3.0"]["share_alike"] is True
    assert codes["kogl-2"]["allows_commercial"] is False and codes["kogl-3"]["allows_derivatives"] is False
    assert codes["unknown"]["allows_commercial"] is False


def test_source_gets_attribution_line_when_licence_requires_it(curator_api):
    r = curator_api.post("/api/v1/sources/", {"name": "CROHME 2016", "kind": "public_dataset",
                                             "licence": "cc-by-nc-sa-3.0", "copyright_holder": "CROHME organisers",
                                             "url": "https://www.isical.ac.in/~crohme/"})
    assert r.status_code == 201, r.content
    assert "CROHME organisers" in r.json()["attribution"] and "BY-NC-SA" in r.json()["attribution"]
    assert r.json()["allows_commercial"] is False


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"licence": "cc-by-9.9"}, "licence"),
        ({"licence": "contract"}, "contract_reference"),
        ({"kind": "stolen"}, "kind"),
        ({"copyright_holder": ""}, "copyright_holder"),
        ({"url": "not a url"}, "url"),
        ({"licence": "cc-by\x00"}, "licence"),  # looked up as is, PostgreSQL would fail on U+0000 (a 500)
    ],
)
def test_bad_source_input_is_400_naming_the_field(curator_api, payload, field):
    base = {"name": "S", "kind": "web", "licence": "cc-by-4.0", "copyright_holder": "H"}
    r = curator_api.post("/api/v1/sources/", {**base, **payload})
    assert r.status_code == 400 and field in r.json(), r.content
    assert Source.objects.count() == 0


def test_licence_code_with_a_lone_surrogate_is_a_400_naming_licence(curator_api):
    """JSON's "\\ud800" escape gives a string PostgreSQL cannot even compare (a 500 if looked up)."""
    body = json.dumps({"name": "S", "kind": "web", "licence": "cc-by\ud800", "copyright_holder": "H"})
    r = curator_api.generic("POST", "/api/v1/sources/", body, content_type="application/json")
    assert r.status_code == 400 and "licence" in r.json(), r.content
    assert Source.objects.count() == 0


def test_vendor_users_see_no_sources(api, annotator, source):
    api.force_authenticate(annotator)
    assert api.get("/api/v1/sources/").json()["count"] == 0
    assert api.get(f"/api/v1/sources/{source.id}/").status_code == 404


def test_source_licence_change_to_nc_refused_when_used_by_commercial_spec(curator_api, spec, source):
    from tests.factories import make_image

    make_image(spec=spec, source=source)
    r = curator_api.patch(f"/api/v1/sources/{source.id}/", {"licence": "cc-by-nc-4.0"})
    assert r.status_code == 400 and spec.name in r.json()["licence"][0]
    source.refresh_from_db()
    assert source.licence == Licence.objects.get(code="cc-by-4.0")
