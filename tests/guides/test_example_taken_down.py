"""A taken-down image cannot become a guide example: its files answer 410, so annotators would be
shown a broken picture."""
import pytest
from django.utils import timezone

from curation.models import Image
from guides.models import GuideExample
from tests import factories

pytestmark = pytest.mark.django_db


def _take_down(image):
    Image.objects.filter(pk=image.pk).update(taken_down_at=timezone.now())


def test_a_taken_down_image_is_refused_as_an_example_naming_image(curator_api, curator, contract, example_image):
    draft = factories.make_guide(spec=contract.spec, by=curator, publish=False)
    _take_down(example_image)
    response = curator_api.post("/api/v1/guide-examples/", {"version": draft.id, "image": example_image.id,
                                                             "kind": "good"}, format="json")
    assert response.status_code == 400
    assert "taken down" in str(response.json()["image"])
    assert GuideExample.objects.count() == 0


def test_the_service_rereads_the_image_so_a_stale_copy_is_refused_too(curator, contract, example_image):
    from django.core.exceptions import ValidationError

    from guides import services
    draft = factories.make_guide(spec=contract.spec, by=curator, publish=False)
    _take_down(example_image)  # the caller's copy still says it is up
    assert example_image.taken_down_at is None
    with pytest.raises(ValidationError) as exc:
        services.guide_example_add(version=draft, image=example_image, kind="bad")
    assert "image" in exc.value.message_dict
    assert GuideExample.objects.count() == 0


def test_an_image_that_is_up_is_still_taken(curator, contract, example_image):
    from guides import services
    draft = factories.make_guide(spec=contract.spec, by=curator, publish=False)
    example = services.guide_example_add(version=draft, image=example_image, kind="good")
    assert example.image_id == example_image.id
