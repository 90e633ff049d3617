"""QA reports through the API and the page: curators only, recompute on a worker."""
from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from common import roles
from pipeline.models import QAReport
from pipeline.stats import spec_stats_compute
from tests import factories
from tests.schema import assert_response_matches_schema

pytestmark = [pytest.mark.django_db,
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]


def client(user) -> APIClient:
    c = APIClient()
    c.force_authenticate(user)
    return c


def page_client(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


def test_latest_report_and_list(qa_world, django_assert_max_num_queries):
    spec_stats_compute(spec=qa_world.spec)
    newest = spec_stats_compute(spec=qa_world.spec)
    api = client(qa_world.curator)
    r = api.get(f"/api/v1/qa-reports/latest/?spec={qa_world.spec.id}")
    assert r.status_code == 200
    assert_response_matches_schema(r)
    assert r.json()["id"] == newest.id
    assert r.json()["payload"]["reviews"]["overall"]["rejected"] == 2
    with django_assert_max_num_queries(4):
        r = api.get(f"/api/v1/qa-reports/?spec={qa_world.spec.id}")
    assert_response_matches_schema(r)
    assert r.json()["count"] == 2


def test_latest_needs_a_spec_and_a_report(qa_world):
    api = client(qa_world.curator)
    r = api.get("/api/v1/qa-reports/latest/?spec=x")
    assert r.status_code == 400 and "spec" in r.json()
    assert api.get(f"/api/v1/qa-reports/latest/?spec={qa_world.spec.id}").status_code == 404


def test_recompute_runs_on_the_worker(qa_world, django_capture_on_commit_callbacks):
    api = client(qa_world.curator)
    with django_capture_on_commit_callbacks(execute=True):
        r = api.post("/api/v1/qa-reports/recompute/", {"spec": qa_world.spec.id}, format="json")
    assert r.status_code == 202
    assert_response_matches_schema(r)
    assert QAReport.objects.filter(spec=qa_world.spec).count() == 1  # eager Celery in tests
    bad = api.post("/api/v1/qa-reports/recompute/", {"spec": 10**9}, format="json")
    assert bad.status_code == 400 and "spec" in bad.json()


@pytest.mark.parametrize("role", [roles.VENDOR_MANAGER, roles.MODEL_TEAM, roles.ANNOTATOR])
def test_only_curators_read_reports(qa_world, role):
    report = spec_stats_compute(spec=qa_world.spec)
    user = qa_world.manager1 if role == roles.VENDOR_MANAGER else factories.make_user(role)
    api = client(user)
    assert api.get(f"/api/v1/qa-reports/{report.id}/").status_code in (403, 404)
    assert api.get(f"/api/v1/qa-reports/latest/?spec={qa_world.spec.id}").status_code in (403, 404)
    assert api.post("/api/v1/qa-reports/recompute/", {"spec": qa_world.spec.id}, format="json").status_code == 403
    assert page_client(user).get(f"/specs/{qa_world.spec.id}/qa/").status_code == 403


def test_page_shows_every_section_with_charts(qa_world, django_capture_on_commit_callbacks):
    c = page_client(qa_world.curator)
    empty = c.get(f"/specs/{qa_world.spec.id}/qa/").content.decode()
    assert 'id="qa-empty"' in empty
    with django_capture_on_commit_callbacks(execute=True):
        r = c.post(f"/specs/{qa_world.spec.id}/qa/recompute/")
    assert r.status_code == 302
    html = c.get(f"/specs/{qa_world.spec.id}/qa/").content.decode()
    for section in ("qa-agreement", "qa-gold", "qa-reviews", "qa-prelabel", "qa-throughput"):
        assert f'id="{section}"' in html
    assert html.count("<svg class=\"chart\"") == 14
    assert 'id="qa-prelabel-confidence"' in html and "averaging 0.60" in html and "0.33" in html
    assert "det@1" in html and "missing_formula" in html
    assert "0.8000 USD" in html  # V2: two accepted tasks at 0.40


def test_page_and_api_show_latex_only_gold_answers_honestly():
    from tests.qa_world import make_latex_gold_world

    world = make_latex_gold_world()
    report = spec_stats_compute(spec=world.spec)
    r = client(world.curator).get(f"/api/v1/qa-reports/{report.id}/")
    assert_response_matches_schema(r)
    gold = r.json()["payload"]["gold"]
    wrong = next(a for a in gold["by_annotator"] if a["name"] == "wrong")
    assert (wrong["region_precision"], wrong["region_recall"], wrong["latex_exact_match"]) == (None, None, 0.0)
    assert gold["overall"]["latex_only_tasks"] == 2
    html = page_client(world.curator).get(f"/specs/{world.spec.id}/qa/").content.decode()
    assert 'id="qa-gold-latex-only">2 of them' in html
    # wrong's row in the per-annotator chart: no geometry ("—"), not a precision of 0
    assert "wrong · precision: —" in html and "wrong · precision: 0" not in html
    assert "wrong · LaTeX exact: 0" in html


def test_cost_chart_draws_one_chart_per_currency_never_one_axis():
    """The chart plotted each vendor's first currency only, all on one axis."""
    from pipeline.views import _qa_charts

    payload = {"throughput": {"by_vendor": [
        {"name": "Acme", "cost": {"USD": "3.00", "EUR": "1.50"}},
        {"name": "Beta", "cost": {"USD": "2.00"}},
    ]}}
    svg = str(_qa_charts(payload)["cost_vendor"])
    assert svg.count("<svg") == 2
    assert "per vendor, in EUR" in svg and "per vendor, in USD" in svg
    eur = svg[svg.index("in EUR"):svg.index("in USD")]
    assert "Acme" in eur and "Beta" not in eur
