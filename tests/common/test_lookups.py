"""JSONField ``has_item``: array membership with JSON types, the same on SQLite and PostgreSQL."""
from __future__ import annotations

import pytest

from pipeline.models import ModelVersion

pytestmark = pytest.mark.django_db


def test_has_item_matches_whole_elements_of_arrays_only():
    values = {"two": ["printed", "shadow"], "one": ["algebra"], "number": [1, 2], "text-number": ["1"],
              "empty": [], "object": {"printed": "shadow"}, "scalar": "printed"}
    for name, config in values.items():
        ModelVersion.objects.create(kind="detector", name=name, version="1", source="builtin", config=config)

    def names(value) -> set[str]:
        return set(ModelVersion.objects.filter(config__has_item=value).values_list("name", flat=True))

    assert names("printed") == {"two"}  # not the object's key, not the bare scalar
    assert names("shadow") == {"two"}  # any element, not only the first
    assert names("alg") == set()  # whole elements, never substrings
    assert names(1) == {"number"} and names("1") == {"text-number"}  # JSON types kept apart
    assert names("nothing") == set()
    assert ModelVersion.objects.exclude(config__has_item="printed").count() == len(values) - 1


def test_has_item_refuses_anything_but_a_plain_value():
    with pytest.raises(TypeError):
        list(ModelVersion.objects.filter(config__has_item=["printed"]))
