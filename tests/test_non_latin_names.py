"""Specs, kinds of image and vendors named without Latin letters (Korean school maths, a Korean
vendor) are accepted with an ASCII slug made from the name, not refused with "The name must
contain letters or digits"."""
import pytest
from django.core.exceptions import ValidationError

from curation import services as cs
from curation.models import DatasetSpec
from labeling.services import vendor_create
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_spec_named_in_korean_gets_a_stable_ascii_slug(curator_api):
    r = curator_api.post("/api/v1/specs/", {"name": "수식 인식", "requirement": "사진 속 수식을 LaTeX로",
                                            "intended_use": "research", "answer_formats": ["quad", "latex"]},
                         format="json")
    assert r.status_code == 201, r.content
    spec = DatasetSpec.objects.get(pk=r.json()["id"])
    assert spec.name == "수식 인식" and spec.slug.startswith("spec-") and spec.slug.isascii()
    # the same name again is the same slug: refused as a duplicate, not a second spec
    r = curator_api.post("/api/v1/specs/", {"name": "수식 인식", "requirement": "x", "intended_use": "research",
                                            "answer_formats": ["quad"]}, format="json")
    assert r.status_code == 400 and ("name" in r.json() or "slug" in r.json()), r.content


def test_a_kind_and_a_vendor_named_without_latin_letters_are_accepted():
    spec = factories.make_spec()
    kind = cs.category_create(spec=spec, name="손글씨 (연필)")
    assert kind.slug.startswith("kind-") and kind.name == "손글씨 (연필)"
    assert cs.category_create(spec=spec, name="手書き").slug != kind.slug
    assert vendor_create(name="주식회사 라벨").slug.startswith("vendor-")


def test_a_name_with_no_letter_or_digit_is_still_refused():
    with pytest.raises(ValidationError) as err:
        cs.category_create(spec=factories.make_spec(), name="!!!")
    assert "name" in err.value.message_dict
