"""Yes/no filters made from a viewset's ``filterset_fields`` are as strict as the declared ones.

django-filter's own filter for a model's BooleanField takes any word it cannot read for "no
filter": ``?allows_commercial=maybe`` listed every licence with a 200, where a 400 naming the
filter is what bad input gets (tests/test_readme_walkthrough_audit.py covers the declared ones).
"""
from __future__ import annotations

import importlib

import pytest
from django.db import models

from common import roles
from curation.models import Licence
from labeling.models import Vendor
from tests import factories

pytestmark = pytest.mark.django_db

APPS = ["common", "labeling", "curation", "guides", "pipeline"]


def _generated_yes_no_filters():
    """(list URL, field) of every model BooleanField named in a routed viewset's filterset_fields."""
    for app in APPS:
        router = getattr(importlib.import_module(f"{app}.api.urls"), "router", None)
        for prefix, viewset, _ in (router.registry if router else []):
            fields = getattr(viewset, "filterset_fields", None) or []
            model = getattr(getattr(viewset.serializer_class, "Meta", None), "model", None)
            for name in fields:
                if model is not None and isinstance(model._meta.get_field(name), models.BooleanField):
                    yield f"/api/v1/{prefix}/", name


def test_every_generated_yes_no_filter_refuses_a_word_it_cannot_read(curator_api):
    found = set(_generated_yes_no_filters())
    assert {("/api/v1/licences/", "allows_commercial"), ("/api/v1/users/", "is_active"),
            ("/api/v1/vendors/", "active"), ("/api/v1/takedowns/", "whole_source")} <= found
    for url, name in sorted(found):
        r = curator_api.get(url, {name: "maybe"})
        assert r.status_code == 400 and list(r.json()) == [name], (url, name, r.status_code, r.content[:200])
        for value in ("1", "0", "TRUE", "false", ""):
            assert curator_api.get(url, {name: value}).status_code == 200, (url, name, value)


def test_generated_yes_no_filters_read_1_and_0_as_true_and_false(curator_api):
    def codes(**params):
        r = curator_api.get("/api/v1/licences/", {"limit": 500, **params})
        assert r.status_code == 200, r.content[:200]
        return {row["code"] for row in r.json()["results"]}

    commercial = set(Licence.objects.filter(allows_commercial=True).values_list("code", flat=True))
    assert commercial and set(Licence.objects.values_list("code", flat=True)) - commercial
    assert codes(allows_commercial="1") == codes(allows_commercial="true") == commercial
    assert codes(allows_commercial="0") == codes(allows_commercial="false") == (
        set(Licence.objects.values_list("code", flat=True)) - commercial)

    on, off = factories.make_vendor(), factories.make_vendor()
    Vendor.objects.filter(pk=off.pk).update(active=False)
    got = {row["id"] for row in curator_api.get("/api/v1/vendors/", {"active": "0"}).json()["results"]}
    assert off.id in got and on.id not in got
    factories.make_user(roles.ANNOTATOR, vendor=on)
    assert curator_api.get("/api/v1/users/", {"is_active": "1"}).json()["count"] >= 2
