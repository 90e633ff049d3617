"""Found by an exploratory pass over the pages: adding an example to a draft guide version with
a mistake (an image id of no image of the spec, regions that are not quads) kept nothing of what
the curator typed: a redirect emptied the form and the reason came only as a banner."""
from __future__ import annotations

import pytest

from common import roles
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def draft(spec):
    curator = factories.make_user(roles.CURATOR)
    return factories.make_guide(spec=spec, publish=False, by=curator), curator


@pytest.mark.parametrize(("image", "regions", "reason"), [
    ("999999", "", "No such image in this spec."),
    (None, "[[[1, 2], [3, 4]]]", "four"),
    (None, "not json", ""),
])
def test_a_refused_example_keeps_what_was_typed_with_the_reason_beside_it(client, spec, draft, image, regions, reason):
    version, curator = draft
    img = factories.make_image(spec=spec)
    client.force_login(curator)
    r = client.post(f"/guide-versions/{version.pk}/examples/", {
        "ex-image": image or str(img.pk), "ex-kind": "bad", "ex-caption": "Exponent typed as subscript",
        "ex-regions": regions})
    assert r.status_code == 400
    html = r.content.decode()
    assert 'value="Exponent typed as subscript"' in html
    assert f'value="{image or img.pk}"' in html
    if regions:
        assert 'value="' in html and regions.replace('"', "&quot;") in html
    assert 'class="errorlist' in html and reason in html
    assert version.examples.count() == 0


def test_a_good_example_is_added_and_the_form_starts_empty_again(client, spec, draft):
    version, curator = draft
    img = factories.make_image(spec=spec)
    client.force_login(curator)
    r = client.post(f"/guide-versions/{version.pk}/examples/", {
        "ex-image": str(img.pk), "ex-kind": "good", "ex-caption": "Clean", "ex-regions": "[]"}, follow=True)
    assert r.status_code == 200 and r.redirect_chain[-1][0] == f"/guide-versions/{version.pk}/edit/"
    assert version.examples.count() == 1 and "Example added." in r.content.decode()


def test_an_example_for_a_published_version_goes_back_to_the_guide(client, spec):
    curator = factories.make_user(roles.CURATOR)
    version = factories.make_guide(spec=spec, by=curator)
    img = factories.make_image(spec=spec)
    client.force_login(curator)
    r = client.post(f"/guide-versions/{version.pk}/examples/", {"ex-image": str(img.pk), "ex-kind": "good"})
    assert r.status_code == 302 and r["Location"].startswith(f"/guides/{version.guide_id}/")
    assert version.examples.count() == 0
