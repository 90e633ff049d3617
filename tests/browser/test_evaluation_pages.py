"""The evaluation pages in a real browser: every worst-sample crop loads through the guarded
API route with the page's session, and screenshots of the comparison and samples pages."""
from __future__ import annotations

import io

import numpy as np
import pytest

from common import roles
from curation.synthetic import formula_photo
from pipeline import evaluation
from pipeline.services import model_version_builtin
from tests import factories
from tests.browser_fixtures import save_screenshot
from tests.pipeline.evaluation_helpers import StubReader, box, make_eval_snapshot, region

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

FORMULAS = [r"a^2 + b^2 = c^2", r"y = mx + b", r"S = \pi r^2"]


def test_worst_samples_show_their_crops_and_the_comparison_table_renders(browser_page, monkeypatch):
    from pipeline import tasks

    # Without a surrounding transaction the enqueue fires at once; these runs use stub models instead.
    monkeypatch.setattr(tasks.run_evaluation, "delay", lambda *a, **kw: None)
    data, images = [], []
    for i, latex in enumerate(FORMULAS):
        img = formula_photo(latex, ("printed", "shadow", "highlighter")[i], np.random.default_rng(i))
        buf = io.BytesIO()
        img.save(buf, "PNG")
        data.append(buf.getvalue())
        images.append(([region(box(40, 40, img.width - 40, img.height - 40), latex)],
                       (("printed", "shadow", "highlighter")[i],)))
    snap = make_eval_snapshot(images, data=data, name="homework-test", requirements=[
        {"metric": "exact_match", "threshold": 0.6}, {"metric": "detection_f1", "threshold": 0.9}])
    versions = model_version_builtin(kind="detector"), model_version_builtin(kind="recognizer")
    curator = factories.make_user(roles.CURATOR)
    quads = [[it[0][0]["points"]] for it in images]
    for readings in ([r"a^2+b^2=c^2", "y = m x", r"S = \pi r < 2"], FORMULAS):
        evaluation.evaluation_run(run=evaluation.evaluation_create(
            snapshot=snap, detector_version=versions[0], recognizer_version=versions[1], created_by=curator),
            reader=StubReader(detections=list(quads), readings=list(readings)))
    run = snap.evaluations.order_by("id").first()

    page = browser_page(factories.make_user(roles.MODEL_TEAM))
    page.goto(f"/evaluations/{run.pk}/samples/")
    crops = page.locator("img.sample-crop")
    assert crops.count() == 3
    page.wait_for_function("() => [...document.querySelectorAll('img.sample-crop')].every(i => i.complete)")
    widths = crops.evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
    assert all(w > 0 for w in widths), widths
    # S = \pi r ^ { 2 } read as S = \pi r < 2: "^ {" and "}" missing, "<" extra, shown escaped
    worst = page.locator("tr[data-sample]").first
    assert worst.locator("td.truth").inner_text() == r"S = \pi r ^ { 2 }"
    assert worst.locator("del.tok-del").all_inner_texts() == ["^ {", "}"]
    assert worst.locator("ins.tok-ins").all_inner_texts() == ["<"]
    save_screenshot(page, "evaluation-worst-samples")
    page.goto(f"/evaluations/?snapshot={snap.pk}")
    assert page.locator("#comparison tbody tr").count() == 2
    assert page.locator("#comparison td.best").count() >= 5
    save_screenshot(page, "evaluation-comparison")
    page.goto(f"/evaluations/{run.pk}/")
    save_screenshot(page, "evaluation-detail")
    assert not page.errors
