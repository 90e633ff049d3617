"""Spec pages: dashboard, detail with quota progress, create/edit through the services."""
from __future__ import annotations

import pytest

from curation.models import Category, DatasetSpec, ModelRequirement
from tests import factories
from tests.pages import cell_errors, field_errors, text

pytestmark = pytest.mark.django_db


def spec_post(**overrides) -> dict:
    """A full spec form submit: main fields, 2 requirement rows, 2 new-category rows."""
    data = {
        "name": "Formula reader", "slug": "", "requirement": "Read photographed formulas into LaTeX",
        "intended_use": "commercial", "answer_formats": ["quad", "latex"], "status": "active",
        "max_ms_per_image": "250", "target_qps": "20", "serving_target": "gpu_server", "default_quota": "100",
        "req-TOTAL_FORMS": "2", "req-INITIAL_FORMS": "0", "req-0-metric": "exact_match", "req-0-threshold": "0.9",
        "req-1-metric": "", "req-1-threshold": "",
        "cat-TOTAL_FORMS": "0", "cat-INITIAL_FORMS": "0",
        "new-TOTAL_FORMS": "2", "new-INITIAL_FORMS": "0", "new-0-name": "Graph paper", "new-0-slug": "",
        "new-0-target_quota": "40", "new-0-description": "Formulas on squared paper",
        "new-1-name": "", "new-1-slug": "", "new-1-target_quota": "", "new-1-description": "",
    }
    data.update(overrides)
    return data


def edit_post(spec: DatasetSpec, **overrides) -> dict:
    """The edit form as the page renders it for `spec`, with `overrides` applied."""
    cats = list(spec.categories.order_by("position", "id"))
    reqs = list(spec.requirements.all())
    data = {
        "name": spec.name, "slug": spec.slug, "requirement": spec.requirement, "intended_use": spec.intended_use,
        "answer_formats": spec.answer_formats, "status": spec.status,
        "max_ms_per_image": spec.max_ms_per_image or "", "target_qps": spec.target_qps or "",
        "serving_target": spec.serving_target,
        "req-TOTAL_FORMS": str(len(reqs) + 2), "req-INITIAL_FORMS": str(len(reqs)),
        "cat-TOTAL_FORMS": str(len(cats)), "cat-INITIAL_FORMS": str(len(cats)),
        "new-TOTAL_FORMS": "2", "new-INITIAL_FORMS": "0",
    }
    for i, r in enumerate(reqs):
        data[f"req-{i}-metric"], data[f"req-{i}-threshold"] = r.metric, r.threshold
    for i, c in enumerate(cats):
        data.update({f"cat-{i}-id": c.id, f"cat-{i}-name": c.name, f"cat-{i}-target_quota": c.target_quota,
                     f"cat-{i}-description": c.description})
    data.update(overrides)
    return data


@pytest.fixture
def filled_spec(source):
    """A spec with 3 images: 2 printed (one also shadow), 1 handwritten; quota 10 each."""
    spec = factories.make_spec(name="Homework photos")
    factories.make_image(spec=spec, source=source, categories=["printed"])
    factories.make_image(spec=spec, source=source, categories=["printed", "shadow"])
    factories.make_image(spec=spec, source=source, categories=["handwritten"])
    return spec


def test_dashboard_shows_status_use_counts_and_progress(client, curator, filled_spec):
    factories.make_spec(name="Empty draft", status="draft")
    client.force_login(curator)
    page = text(client.get("/specs/"))
    assert "Homework photos homework-photos Draft Commercial product quad, latex 5 3 3 / 50" in page
    assert "Empty draft empty-draft Draft Commercial product quad, latex 5 0 0 / 50" in page


def test_dashboard_filters_by_status(client, curator):
    factories.make_spec(name="Live one", status="active")
    factories.make_spec(name="Old one", status="closed")
    client.force_login(curator)
    page = text(client.get("/specs/?status=active"))
    assert "Live one" in page and "Old one" not in page


def test_dashboard_query_count_does_not_grow_with_specs(client, curator, django_assert_max_num_queries):
    client.force_login(curator)
    factories.make_spec()
    with django_assert_max_num_queries(10) as few:
        client.get("/specs/")
    for _ in range(8):
        factories.make_image(spec=factories.make_spec())
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get("/specs/").status_code == 200


def test_detail_shows_quota_progress_per_category(client, curator, filled_spec, source):
    ModelRequirement.objects.create(spec=filled_spec, metric="exact_match", threshold=0.85)
    client.force_login(curator)
    r = client.get(f"/specs/{filled_spec.pk}/")
    assert r.status_code == 200
    page = text(r)
    assert "Printed 2 / 10 collected · 0 labeled · 0 accepted 20%" in page
    assert "Handwritten 1 / 10 collected · 0 labeled · 0 accepted 10%" in page
    assert "Shadow 1 / 10 collected · 0 labeled · 0 accepted 10%" in page
    assert "Whiteout 0 / 10 collected · 0 labeled · 0 accepted 0%" in page
    assert "LaTeX exact match >= 0.85" in page
    assert f"{source.name} {source.licence.name}" in page and "Quadrilateral (4 points), LaTeX" in page
    printed = filled_spec.categories.get(slug="printed")
    assert f"/images/?spec={filled_spec.pk}&amp;category={printed.pk}" in r.content.decode()


def test_detail_query_count_does_not_grow_with_images(client, curator, filled_spec, source,
                                                      django_assert_max_num_queries):
    client.force_login(curator)
    with django_assert_max_num_queries(17) as few:
        client.get(f"/specs/{filled_spec.pk}/")
    for _ in range(10):
        factories.make_image(spec=filled_spec, source=factories.make_source(), categories=["whiteout"])
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert "Whiteout 10 / 10" in text(client.get(f"/specs/{filled_spec.pk}/"))


def test_model_team_reads_specs_but_cannot_edit(client, model_team, filled_spec):
    client.force_login(model_team)
    assert client.get("/specs/").status_code == 200
    r = client.get(f"/specs/{filled_spec.pk}/")
    assert r.status_code == 200 and "Edit spec" not in text(r)
    assert client.get("/specs/new/").status_code == 403
    assert client.get(f"/specs/{filled_spec.pk}/edit/").status_code == 403


@pytest.mark.parametrize("url", ["/specs/", "/specs/new/", "/specs/{pk}/", "/specs/{pk}/edit/"])
def test_spec_pages_refuse_vendor_users(client, annotator, spec, url):
    client.force_login(annotator)
    assert client.get(url.format(pk=spec.pk)).status_code == 403


def test_unknown_spec_is_404(client, curator):
    client.force_login(curator)
    assert client.get("/specs/99999/").status_code == 404


def test_create_spec_with_requirements_and_custom_kind(client, curator):
    client.force_login(curator)
    assert client.get("/specs/new/").status_code == 200
    r = client.post("/specs/new/", spec_post())
    spec = DatasetSpec.objects.get(name="Formula reader")
    assert r.status_code == 302 and r["Location"] == f"/specs/{spec.pk}/"
    assert (spec.intended_use, spec.answer_formats, spec.status) == ("commercial", ["quad", "latex"], "active")
    assert (spec.max_ms_per_image, spec.target_qps, spec.serving_target) == (250, 20.0, "gpu_server")
    assert spec.created_by == curator
    assert [(r.metric, r.threshold) for r in spec.requirements.all()] == [("exact_match", 0.9)]
    quotas = dict(spec.categories.values_list("slug", "target_quota"))
    assert quotas == {"printed": 100, "handwritten": 100, "shadow": 100, "highlighter": 100, "whiteout": 100,
                      "graph-paper": 40}


def test_create_spec_errors_appear_beside_fields_and_nothing_is_saved(client, curator):
    client.force_login(curator)
    r = client.post("/specs/new/", spec_post(answer_formats=[]))
    assert r.status_code == 400
    assert "Choose at least one answer format" in field_errors(r, "id_answer_formats")

    r = client.post("/specs/new/", spec_post(**{"req-1-metric": "exact_match", "req-1-threshold": "0.5"}))
    assert "metric exact_match is given twice" in cell_errors(r, "req-1-metric")

    r = client.post("/specs/new/", spec_post(**{"req-0-threshold": ""}))
    assert "Give the threshold" in cell_errors(r, "req-0-threshold")

    r = client.post("/specs/new/", spec_post(**{"new-0-name": "Printed again", "new-0-slug": "printed"}))
    assert r.status_code == 400
    assert "already has a category 'printed'" in cell_errors(r, "new-0-slug")
    assert not DatasetSpec.objects.exists()
    assert not Category.objects.exists()


def test_create_spec_with_a_taken_name_shows_error_on_name(client, curator):
    factories.make_spec(name="Formula reader")
    client.force_login(curator)
    r = client.post("/specs/new/", spec_post())
    assert r.status_code == 400
    assert "already exists" in field_errors(r, "id_name") or "already exists" in field_errors(r, "id_slug")
    assert DatasetSpec.objects.count() == 1


def test_edit_spec_changes_quota_requirements_and_adds_kind(client, curator, filled_spec):
    client.force_login(curator)
    page = client.get(f"/specs/{filled_spec.pk}/edit/")
    assert page.status_code == 200 and 'value="Homework photos"' in page.content.decode()
    data = edit_post(filled_spec, **{
        "status": "active", "cat-0-target_quota": "500", "cat-1-name": "Hand-written",
        "req-0-metric": "bleu4", "req-0-threshold": "0.7", "new-0-name": "Blackboard", "new-0-target_quota": "30",
    })
    r = client.post(f"/specs/{filled_spec.pk}/edit/", data)
    assert r.status_code == 302, text(r)
    filled_spec.refresh_from_db()
    assert filled_spec.status == "active"
    cats = {c.slug: (c.name, c.target_quota) for c in filled_spec.categories.all()}
    assert cats["printed"] == ("Printed", 500) and cats["handwritten"] == ("Hand-written", 10)
    assert cats["blackboard"] == ("Blackboard", 30)
    assert [(r.metric, r.threshold) for r in filled_spec.requirements.all()] == [("bleu4", 0.7)]
    assert "Printed 2 / 500 collected" in text(client.get(f"/specs/{filled_spec.pk}/"))


def test_edit_refusal_rolls_back_every_change_of_the_submit(client, curator, nc_source):
    spec = factories.make_spec(intended_use="research", name="Research set")
    factories.make_image(spec=spec, source=nc_source)
    client.force_login(curator)
    r = client.post(f"/specs/{spec.pk}/edit/", edit_post(spec, intended_use="commercial",
                                                         **{"cat-0-target_quota": "777"}))
    assert r.status_code == 400
    assert "forbids commercial use" in field_errors(r, "id_intended_use")
    spec.refresh_from_db()
    assert spec.intended_use == "research"
    assert spec.categories.get(slug="printed").target_quota == 10


def test_edit_category_error_shows_on_its_row(client, curator, spec):
    client.force_login(curator)
    r = client.post(f"/specs/{spec.pk}/edit/", edit_post(spec, **{"cat-2-name": ""}))
    assert r.status_code == 400
    assert "required" in cell_errors(r, "cat-2-name")
    r = client.post(f"/specs/{spec.pk}/edit/", edit_post(spec, **{"new-1-name": "Shadow", "new-1-slug": ""}))
    assert "already has a category 'shadow'" in cell_errors(r, "new-1-slug")
    assert spec.categories.count() == 5


def test_edit_cannot_touch_another_specs_category(client, curator, spec):
    other = factories.make_spec()
    foreign = other.categories.get(slug="printed")
    client.force_login(curator)
    r = client.post(f"/specs/{spec.pk}/edit/", edit_post(spec, **{"cat-0-id": foreign.pk, "cat-0-target_quota": "9"}))
    assert r.status_code == 400
    assert "not part of the spec" in text(r)
    foreign.refresh_from_db()
    assert foreign.target_quota == 10
