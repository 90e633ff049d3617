"""The curation admin saves through the services; a rule only a service knows (a licence
that would put non-commercial images into a commercial spec) is shown on the change form,
with nothing changed: not a 500, and not a "changed successfully" over a refused change."""
from __future__ import annotations

from html.parser import HTMLParser

import pytest

from curation.models import DatasetSpec, Licence, Source
from tests import factories

pytestmark = pytest.mark.django_db


class _FormData(HTMLParser):
    """What a browser would post from the page's change form, as it stands."""

    def __init__(self):
        super().__init__()
        self.data: list[tuple[str, str]] = []
        self._select: str | None = None
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "button", "file"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.data.append((name, a.get("value") or ("on" if a.get("type") == "checkbox" else "")))
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select and "selected" in a:
            self.data.append((self._select, a.get("value", "")))
        elif tag == "textarea" and name:
            self._textarea, self._text = name, ""

    def handle_data(self, data):
        if self._textarea:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea:
            self.data.append((self._textarea, self._text.lstrip("\n")))
            self._textarea = None


def change_form(client, url: str, **changes) -> dict:
    parser = _FormData()
    parser.feed(client.get(url).content.decode())
    data: dict = {}
    for name, value in parser.data:
        data.setdefault(name, []).append(value)
    data.update({k: [str(v)] for k, v in changes.items()})
    data.pop("csrfmiddlewaretoken", None)
    return data


def test_a_source_licence_change_the_service_refuses_is_shown_and_nothing_changes(client, curator, source):
    spec = factories.make_spec(intended_use=DatasetSpec.IntendedUse.COMMERCIAL)
    factories.make_image(spec=spec, source=source)
    nc = Licence.objects.get(code="cc-by-nc-sa-3.0")
    client.force_login(curator)
    url = f"/admin/curation/source/{source.pk}/change/"
    r = client.post(url, change_form(client, url, licence=nc.pk, notes="moved"))
    page = r.content.decode()
    assert r.status_code == 200 and "forbids commercial use" in page and spec.name in page
    assert "changed successfully" not in page
    source.refresh_from_db()
    assert source.licence.code == "cc-by-4.0" and source.notes != "moved"
    r = client.post(url, change_form(client, url, notes="checked"), follow=True)
    assert "changed successfully" in r.content.decode()
    source.refresh_from_db()
    assert source.notes == "checked"


def test_a_source_the_service_refuses_to_create_is_shown_and_not_stored(client, curator):
    client.force_login(curator)
    contract = Licence.objects.filter(family=Licence.Family.CONTRACT).first()
    url = "/admin/curation/source/add/"
    before = Source.objects.count()
    r = client.post(url, change_form(client, url, name="Vendor photos", kind=Source.objects.model.Kind.choices[0][0],
                                     licence=contract.pk, copyright_holder="Acme", contract_reference=""))
    assert r.status_code == 200 and "needs the contract reference" in r.content.decode()
    assert Source.objects.count() == before


def test_making_a_spec_commercial_over_non_commercial_images_is_shown_not_a_500(client, curator, nc_source):
    spec = factories.make_spec(intended_use=DatasetSpec.IntendedUse.RESEARCH)
    factories.make_image(spec=spec, source=nc_source)
    client.force_login(curator)
    url = f"/admin/curation/datasetspec/{spec.pk}/change/"
    r = client.post(url, change_form(client, url, intended_use=DatasetSpec.IntendedUse.COMMERCIAL))
    assert r.status_code == 200 and "forbids commercial use" in r.content.decode()
    spec.refresh_from_db()
    assert spec.intended_use == DatasetSpec.IntendedUse.RESEARCH
    r = client.post(url, change_form(client, url, name="Renamed"), follow=True)
    assert "changed successfully" in r.content.decode()
    spec.refresh_from_db()
    assert spec.name == "Renamed"


def test_a_licence_made_non_commercial_under_a_commercial_specs_images_is_refused(client, curator, source):
    spec = factories.make_spec(intended_use=DatasetSpec.IntendedUse.COMMERCIAL)
    factories.make_image(spec=spec, source=source)
    licence = source.licence
    client.force_login(curator)
    url = f"/admin/curation/licence/{licence.pk}/change/"
    data = change_form(client, url)
    data.pop("allows_commercial", None)  # unticked
    r = client.post(url, data)
    page = r.content.decode()
    assert r.status_code == 200 and "Commercial specs hold images under" in page and spec.name in page
    licence.refresh_from_db()
    assert licence.allows_commercial
    r = client.post(url, change_form(client, url, description="Checked against the legal text."), follow=True)
    assert "changed successfully" in r.content.decode()
    licence.refresh_from_db()
    assert licence.description == "Checked against the legal text." and licence.allows_commercial
