"""Audit of the snapshot and evaluation pages as curators and model teams meet them: what a
page says must be what the frozen snapshot and the stored run hold."""
from __future__ import annotations

import re

import pytest
from django.test import Client

from curation.models import Category, DatasetSpec
from pipeline import evaluation
from pipeline.models import EvaluationRun
from pipeline.services import model_version_builtin
from tests.pages import text
from tests.pipeline.evaluation_helpers import StubReader, make_eval_snapshot, region
from tests.pipeline.test_evaluation_service import TRUTH_BOX, three_image_snapshot

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


@pytest.fixture
def versions():
    return model_version_builtin(kind="detector"), model_version_builtin(kind="recognizer")


# ------------------------------------------------------------------ verdict badges


def _verdict_cell(html: str, run_id: int) -> str:
    row = re.search(rf'<tr data-run="{run_id}">(.*?)</tr>', html, re.S).group(1)
    return re.search(r'<td class="verdicts">(.*?)</td>', row, re.S).group(1)


def test_unfinished_runs_are_not_labelled_as_having_no_requirements(model_team, curator, versions):
    """A spec with requirements: a queued, cancelled or failed run has no verdicts yet, which
    the comparison table and the run's page must not present as "no requirements"."""
    snap = three_image_snapshot(requirements=[{"metric": "exact_match", "threshold": 0.9}])
    queued = evaluation.evaluation_create(snapshot=snap, detector_version=versions[0], recognizer_version=None,
                                          created_by=curator)
    cancelled = evaluation.evaluation_cancel(run=evaluation.evaluation_create(
        snapshot=snap, detector_version=versions[0], recognizer_version=None, created_by=curator))
    failed = evaluation.evaluation_create(snapshot=snap, detector_version=versions[0], recognizer_version=None,
                                          created_by=curator)
    EvaluationRun.objects.filter(pk=failed.pk).update(status=EvaluationRun.Status.FAILED, error="boom")
    client = _client(model_team)
    html = client.get(f"/evaluations/?snapshot={snap.pk}").content.decode()
    for run in (queued, cancelled, failed):
        cell = _verdict_cell(html, run.pk)
        assert "no requirements" not in cell, (run.status, cell)
    assert "pending" in _verdict_cell(html, queued.pk)
    detail = client.get(f"/evaluations/{queued.pk}/").content.decode()
    meta = re.search(r"<dt>Verdicts</dt><dd>(.*?)</dd>", detail, re.S).group(1)
    assert "no requirements" not in meta and "pending" in meta


def test_a_done_run_of_a_spec_without_requirements_still_says_so(model_team, curator, versions):
    snap = three_image_snapshot()
    run = evaluation.evaluation_run(run=evaluation.evaluation_create(
        snapshot=snap, detector_version=None, recognizer_version=versions[1], created_by=curator),
        reader=StubReader(readings=["x^{2}+1", "a+b", r"\frac{1}{2}"]))
    assert run.status == "done"
    html = _client(model_team).get(f"/evaluations/?snapshot={snap.pk}").content.decode()
    assert "no requirements" in _verdict_cell(html, run.pk)


# ------------------------------------------------------------------ frozen categories on the snapshot page


def test_snapshot_page_names_categories_as_frozen_not_as_renamed_or_deleted_since(model_team):
    snap = three_image_snapshot()
    spec = snap.spec
    Category.objects.filter(spec=spec, slug="printed").update(name="Typeset (renamed later)")
    Category.objects.filter(spec=spec, slug="handwritten").delete()
    Category.objects.create(spec=spec, slug="added", name="Added later", position=0)
    html = _client(model_team).get(f"/snapshots/{snap.pk}/").content.decode()
    table = re.search(r'<table class="compact" id="split-table">(.*?)</table>', html, re.S).group(1)
    assert "Typeset (renamed later)" not in table and "Added later" not in table
    printed = re.search(r'<tr data-category="printed"><th scope="row">(.*?)</th>', table).group(1)
    handwritten = re.search(r'<tr data-category="handwritten"><th scope="row">(.*?)</th>', table).group(1)
    frozen = {c["slug"]: c["name"] for c in snap.categories}
    assert (printed, handwritten) == (frozen["printed"], frozen["handwritten"])
    # the frozen order too: printed was listed before handwritten when the snapshot was taken
    assert table.index('data-category="printed"') < table.index('data-category="handwritten"')


def test_snapshot_page_shows_the_intended_use_its_exports_apply(model_team):
    """Frozen for a commercial spec that was made research later: exports still leave out the
    non-commercial image (the stricter use), so the page must say so."""
    snap = make_eval_snapshot([([region(TRUTH_BOX, "a")], ("printed",))],
                              intended_use=DatasetSpec.IntendedUse.COMMERCIAL)
    assert snap.intended_use == DatasetSpec.IntendedUse.COMMERCIAL
    DatasetSpec.objects.filter(pk=snap.spec_id).update(intended_use=DatasetSpec.IntendedUse.RESEARCH)
    page = text(_client(model_team).get(f"/snapshots/{snap.pk}/"))
    assert "Commercial product" in page


def test_the_left_out_section_follows_the_stricter_use_not_only_the_spec_now(model_team):
    """Frozen for a commercial spec since made research: exports still leave the image whose
    source turned non-commercial out, and the page said nothing (it asked the spec only)."""
    from curation.models import Image, SnapshotItem
    from tests import factories

    snap = make_eval_snapshot([([region(TRUTH_BOX, "a")], ("printed",)), ([region(TRUTH_BOX, "b")], ("printed",))],
                              intended_use=DatasetSpec.IntendedUse.COMMERCIAL)
    item = SnapshotItem.objects.filter(snapshot=snap).order_by("image_id").first()
    Image.objects.filter(pk=item.image_id).update(source=factories.make_source("cc-by-nc-sa-3.0"))
    DatasetSpec.objects.filter(pk=snap.spec_id).update(intended_use=DatasetSpec.IntendedUse.RESEARCH)
    html = _client(model_team).get(f"/snapshots/{snap.pk}/").content.decode()
    assert 'id="left-out-count">1<' in html and 'id="left-out-table"' in html


def test_a_refused_start_keeps_the_models_it_had_chosen(model_team):
    snap = three_image_snapshot()
    detector = model_version_builtin(kind="detector")
    client = _client(model_team)
    # a detector offered as the recognizer: refused with a message naming it
    r = client.post("/evaluations/start/", {"snapshot": snap.pk, "detector_version": detector.pk,
                                            "recognizer_version": detector.pk}, follow=True)
    html = r.content.decode()
    assert "is a detector, not a recognizer" in html
    assert f'<option value="{detector.pk}" selected>' in html
