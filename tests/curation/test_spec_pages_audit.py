"""Spec create/edit pages, from an audit of the curator's spec design: thresholds outside the
metrics' range, new-kind rows without a name, removing custom kinds, out-of-range numbers."""
from __future__ import annotations

import pytest

from curation import services
from curation.models import Category, DatasetSpec
from tests import factories
from tests.curation.test_pages_specs import edit_post, spec_post
from tests.pages import cell_errors, field_errors, text

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("threshold", ["95", "-3", "1.5"])
def test_threshold_outside_0_to_1_is_refused_beside_it_and_nothing_saved(client, curator, threshold):
    client.force_login(curator)
    r = client.post("/specs/new/", spec_post(**{"req-0-threshold": threshold}))
    assert r.status_code == 400
    assert "fraction between 0 and 1" in cell_errors(r, "req-0-threshold")
    assert not DatasetSpec.objects.exists()


def test_threshold_bounds_0_and_1_are_accepted(client, curator):
    client.force_login(curator)
    r = client.post("/specs/new/", spec_post(**{"req-0-threshold": "1", "req-1-metric": "token_edit_distance",
                                                "req-1-threshold": "0"}))
    assert r.status_code == 302, text(r)
    spec = DatasetSpec.objects.get()
    assert sorted((q.metric, q.threshold) for q in spec.requirements.all()) == [
        ("exact_match", 1.0), ("token_edit_distance", 0.0)]


def test_threshold_that_is_not_a_number_gets_one_message(client, curator):
    client.force_login(curator)
    r = client.post("/specs/new/", spec_post(**{"req-0-threshold": "abc"}))
    assert r.status_code == 400
    assert cell_errors(r, "req-0-threshold") == "Enter a number."


def test_new_kind_row_with_quota_but_no_name_is_not_dropped_silently(client, curator):
    client.force_login(curator)
    r = client.post("/specs/new/", spec_post(**{"new-1-target_quota": "50", "new-1-description": "chalk"}))
    assert r.status_code == 400
    assert "Give the new kind a name" in cell_errors(r, "new-1-name")
    assert not DatasetSpec.objects.exists() and not Category.objects.exists()


def test_huge_quotas_and_times_are_refused_beside_their_field(client, curator, spec):
    client.force_login(curator)
    r = client.post("/specs/new/", spec_post(default_quota="5000000000", max_ms_per_image="5000000000",
                                             **{"new-0-target_quota": "5000000000"}))
    assert r.status_code == 400
    assert "less than or equal to 2147483647" in field_errors(r, "id_default_quota")
    assert "less than or equal to 2147483647" in field_errors(r, "id_max_ms_per_image")
    assert "less than or equal to 2147483647" in cell_errors(r, "new-0-target_quota")
    r = client.post(f"/specs/{spec.pk}/edit/", edit_post(spec, **{"cat-4-target_quota": "5000000000"}))
    assert r.status_code == 400
    assert "less than or equal to 2147483647" in cell_errors(r, "cat-4-target_quota")
    assert spec.categories.get(slug="whiteout").target_quota == 10
    assert DatasetSpec.objects.count() == 1


def test_edit_page_offers_remove_on_custom_kinds_only(client, curator, spec):
    services.category_create(spec=spec, name="Chalkboard", target_quota=5)
    client.force_login(curator)
    html = client.get(f"/specs/{spec.pk}/edit/").content.decode()
    assert html.count('name="cat-5-remove"') == 1
    assert "Remove<span class=\"sr-only\"> chalkboard</span>" in html
    assert 'name="cat-0-remove"' not in html


def test_edit_removes_a_custom_kind_with_the_other_changes(client, curator, spec):
    services.category_create(spec=spec, name="Chalkboard", target_quota=5)
    client.force_login(curator)
    r = client.post(f"/specs/{spec.pk}/edit/", edit_post(spec, **{"cat-5-remove": "on", "cat-0-target_quota": "42"}))
    assert r.status_code == 302, text(r)
    assert list(spec.categories.values_list("slug", flat=True)) == [
        "printed", "handwritten", "shadow", "highlighter", "whiteout"]
    assert spec.categories.get(slug="printed").target_quota == 42


def test_removing_a_kind_images_carry_is_refused_on_its_row_and_rolled_back(client, curator, spec, source):
    services.category_create(spec=spec, name="Chalkboard", target_quota=5)
    factories.make_image(spec=spec, source=source, categories=["chalkboard"])
    client.force_login(curator)
    r = client.post(f"/specs/{spec.pk}/edit/", edit_post(spec, **{"cat-5-remove": "on", "cat-0-target_quota": "42"}))
    assert r.status_code == 400
    assert "Images carry this category" in cell_errors(r, "cat-5-remove")
    assert spec.categories.filter(slug="chalkboard").exists()
    assert spec.categories.get(slug="printed").target_quota == 10


def test_a_forged_remove_of_a_built_in_kind_is_refused(client, curator, spec):
    client.force_login(curator)
    r = client.post(f"/specs/{spec.pk}/edit/", edit_post(spec, **{"cat-0-remove": "on"}))
    assert r.status_code == 400
    assert "Built-in categories cannot be deleted" in text(r)
    assert spec.categories.count() == 5


@pytest.mark.parametrize("qps", ["0", "1e300"])
def test_a_target_qps_of_zero_or_beyond_reason_is_refused_beside_it(client, curator, qps):
    # 0 was saved and shown as "—" (no requirement); 1e+300 was saved as asked.
    client.force_login(curator)
    r = client.post("/specs/new/", spec_post(target_qps=qps))
    assert r.status_code == 400
    assert field_errors(r, "id_target_qps")
    assert not DatasetSpec.objects.exists()
