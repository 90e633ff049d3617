"""A custom kind of image that annotations' regions name (regions carry category slugs of the
spec) cannot be deleted: the stored answers would name a kind the spec no longer has, and the
annotator re-saving such an answer (rework after a rejection) would be refused for it."""
from __future__ import annotations

import pytest

from common import roles
from curation import services
from curation.models import Category
from labeling.services import annotation_create, task_claim_next
from tests import factories
from tests.curation.test_pages_specs import edit_post
from tests.factories import quad
from tests.pages import cell_errors

pytestmark = pytest.mark.django_db


def _annotate_with(spec, slug):
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=1)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    task = task_claim_next(annotator=annotator).task
    return annotation_create(task=task, annotator=annotator, submit=True, regions=[quad(categories=[slug])])


def test_a_kind_regions_name_is_not_deleted_through_the_api(curator_api, spec):
    glare = services.category_create(spec=spec, name="Glare")
    _annotate_with(spec, "glare")
    assert not glare.images.exists()  # no image carries it: only the regions do
    r = curator_api.delete(f"/api/v1/categories/{glare.id}/")
    assert r.status_code == 400, r.content[:300]
    assert "annotation" in " ".join(r.json()["category"]).lower()
    assert Category.objects.filter(pk=glare.pk).exists()


def test_a_kind_regions_name_is_not_removed_on_the_spec_page(client, curator, spec):
    glare = services.category_create(spec=spec, name="Glare")
    _annotate_with(spec, "glare")
    client.force_login(curator)
    r = client.post(f"/specs/{spec.pk}/edit/", edit_post(spec, **{"cat-5-remove": "on"}))
    assert r.status_code == 400
    assert "annotation" in cell_errors(r, "cat-5-remove").lower()
    assert Category.objects.filter(pk=glare.pk).exists()


def test_a_kind_only_another_specs_regions_name_is_still_deleted(curator_api, spec):
    other = factories.make_spec()
    services.category_create(spec=other, name="Glare")
    _annotate_with(other, "glare")
    glare = services.category_create(spec=spec, name="Glare")
    assert curator_api.delete(f"/api/v1/categories/{glare.id}/").status_code == 204
    assert not Category.objects.filter(pk=glare.pk).exists()


def test_a_kind_a_pre_label_names_is_not_deleted(curator_api, spec, source):
    from labeling.services import predictions_import

    glare = services.category_create(spec=spec, name="Glare")
    image = factories.make_image(spec=spec, source=source, data=factories.png_bytes(200, 100))
    predictions_import(model_name="m", model_version="1",
                       items=[{"image": image.id, "regions": [quad(categories=["glare"])], "confidence": 0.5}])
    assert curator_api.delete(f"/api/v1/categories/{glare.id}/").status_code == 400
    assert Category.objects.filter(pk=glare.pk).exists()
