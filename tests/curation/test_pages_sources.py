"""Source pages and the licence catalogue: flags shown, writes through the services."""
from __future__ import annotations

import pytest

from curation.models import Licence, Source
from tests import factories
from tests.pages import field_errors, text

pytestmark = pytest.mark.django_db


def source_post(**overrides) -> dict:
    data = {"name": "School photos 2026", "kind": "in_house", "licence": Licence.objects.get(code="cc-by-4.0").pk,
            "copyright_holder": "Mathset Inc.", "attribution": "", "url": "https://example.org/photos",
            "contract_reference": "", "acquired_on": "2026-03-01", "notes": ""}
    data.update(overrides)
    return data


def test_source_list_shows_licence_and_flags(client, curator):
    factories.make_source("cc-by-nc-sa-3.0", name="CROHME 2016")
    factories.make_image(source=factories.make_source("cc0-1.0", name="Public scans"))
    client.force_login(curator)
    page = text(client.get("/sources/"))
    assert "CROHME 2016 Public dataset" in page
    assert "non-commercial attribution share-alike" in page
    assert "Public scans" in page and "commercial ok" in page


def test_source_list_query_count_does_not_grow(client, curator, django_assert_max_num_queries):
    client.force_login(curator)
    factories.make_source()
    with django_assert_max_num_queries(8) as few:
        client.get("/sources/")
    for code in ["cc0-1.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "mit"]:
        factories.make_image(spec=factories.make_spec(intended_use="research"), source=factories.make_source(code))
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get("/sources/").status_code == 200


def test_create_source_through_form(client, curator):
    client.force_login(curator)
    assert client.get("/sources/new/").status_code == 200
    r = client.post("/sources/new/", source_post())
    assert r.status_code == 302
    source = Source.objects.get(name="School photos 2026")
    assert source.licence.code == "cc-by-4.0" and source.created_by == curator
    assert str(source.acquired_on) == "2026-03-01"
    # The licence requires attribution: the service wrote the standard line.
    assert "Mathset Inc." in source.attribution and source.licence.name in source.attribution


def test_contract_source_needs_reference_beside_the_field(client, curator):
    client.force_login(curator)
    contract = Licence.objects.filter(family="contract").first()
    r = client.post("/sources/new/", source_post(licence=contract.pk))
    assert r.status_code == 400
    assert "needs the contract reference" in field_errors(r, "id_contract_reference")
    assert not Source.objects.exists()


def test_form_errors_for_bad_input(client, curator):
    client.force_login(curator)
    r = client.post("/sources/new/", source_post(licence=999999, url="not a url", kind="stolen", name=""))
    assert r.status_code == 400
    assert field_errors(r, "id_licence") and field_errors(r, "id_url") and field_errors(r, "id_kind")
    assert "required" in field_errors(r, "id_name")


def test_edit_source_and_refused_licence_change(client, curator, spec):
    source = factories.make_source("cc-by-4.0", name="Homework")
    factories.make_image(spec=spec, source=source)
    client.force_login(curator)
    page = client.get(f"/sources/{source.pk}/edit/")
    assert page.status_code == 200 and 'value="Homework"' in page.content.decode()
    nc = Licence.objects.get(code="cc-by-nc-4.0")
    r = client.post(f"/sources/{source.pk}/edit/", source_post(name="Homework", licence=nc.pk))
    assert r.status_code == 400
    assert "forbids commercial use" in field_errors(r, "id_licence")
    source.refresh_from_db()
    assert source.licence.code == "cc-by-4.0"
    r = client.post(f"/sources/{source.pk}/edit/", source_post(name="Homework v2", copyright_holder="Someone"))
    assert r.status_code == 302
    source.refresh_from_db()
    assert (source.name, source.copyright_holder) == ("Homework v2", "Someone")


def test_licence_catalogue_lists_flags_and_source_counts(client, curator):
    factories.make_source("cc-by-nc-sa-3.0")
    client.force_login(curator)
    page = text(client.get("/licences/"))
    assert Licence.objects.count() >= 20
    row = Licence.objects.get(code="cc-by-nc-sa-3.0")
    assert f"{row.name} cc-by-nc-sa-3.0 Creative Commons no yes yes required 1" in page


@pytest.mark.parametrize("url", ["/sources/", "/sources/new/", "/licences/"])
def test_source_pages_are_for_curators(client, annotator, model_team, url):
    for user in (annotator, model_team):
        client.force_login(user)
        assert client.get(url).status_code == 403
