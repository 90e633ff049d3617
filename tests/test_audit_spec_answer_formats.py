"""A spec's answer formats cannot drop a format its stored answers use: the spec would
describe data it does not hold (regions drawn as quads in a spec that asks for masks only,
LaTeX typed in a spec that asks for none), and every export and vendor reads the spec."""
from __future__ import annotations

import pytest

from common import roles
from curation.models import DatasetSpec
from labeling.services import annotation_create, task_claim_next
from tests import factories
from tests.curation.test_pages_specs import edit_post
from tests.factories import quad
from tests.pages import field_errors

pytestmark = pytest.mark.django_db


@pytest.fixture
def answered_spec():
    spec = factories.make_spec(answer_formats=["quad", "mask", "latex"])
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=1)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    task = task_claim_next(annotator=annotator).task
    annotation_create(task=task, annotator=annotator, submit=True, regions=[quad(latex="x+1")])
    return spec


@pytest.mark.parametrize("formats, dropped", [(["mask", "latex"], "quad"), (["quad", "mask"], "latex")])
def test_api_refuses_dropping_a_format_answers_use(curator_api, answered_spec, formats, dropped):
    r = curator_api.patch(f"/api/v1/specs/{answered_spec.id}/", {"answer_formats": formats}, format="json")
    assert r.status_code == 400, r.json()
    assert dropped in " ".join(r.json()["answer_formats"])
    answered_spec.refresh_from_db()
    assert answered_spec.answer_formats == ["quad", "mask", "latex"]


def test_api_drops_a_format_no_answer_uses(curator_api, answered_spec):
    r = curator_api.patch(f"/api/v1/specs/{answered_spec.id}/", {"answer_formats": ["quad", "latex"]}, format="json")
    assert r.status_code == 200, r.json()
    assert DatasetSpec.objects.get(pk=answered_spec.pk).answer_formats == ["quad", "latex"]


def test_page_shows_the_refusal_beside_answer_formats(client, curator, answered_spec):
    client.force_login(curator)
    data = edit_post(answered_spec)
    data["answer_formats"] = ["mask", "latex"]
    r = client.post(f"/specs/{answered_spec.pk}/edit/", data)
    assert r.status_code == 400
    assert "quad" in field_errors(r, "id_answer_formats")
