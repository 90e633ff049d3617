"""An external (HTTP) model is only sent the test images an export of the snapshot would let
out: the licence frozen with the item and its source's licence now must both allow the
stricter of the snapshot's frozen and its spec's current intended use (the exporters' rule,
curation.exporters.exclusion_reason). What was held back is recorded with the run, per licence
and reason. A local model runs in-process, sends nothing out, and still sees every test image."""
from __future__ import annotations

import pytest

from curation.exporters.base import REASON_NON_COMMERCIAL, REASON_NOW_NON_COMMERCIAL
from curation.models import DatasetSpec, Image, SnapshotItem
from pipeline import evaluation, runtime, services
from pipeline.models import EvaluationSample
from tests import factories
from tests.pipeline.evaluation_helpers import StubReader
from tests.pipeline.test_evaluation_service import TRUTH, TRUTH_BOX, three_image_snapshot
from tests.pipeline.test_http_model import FakeModel, found

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def model(live_server, settings):
    """A model server on 127.0.0.1 that fetches every signed URL it is sent (tests/pipeline/test_http_model.py)."""
    settings.PUBLIC_BASE_URL = live_server.url
    runtime.clear_cache()
    fake = FakeModel()
    yield fake
    fake.close()
    runtime.clear_cache()


@pytest.fixture
def pipeline_version(model):
    return services.model_version_register_http(name="ext", version="1", endpoint_url=model.url)


def _items(snap) -> list[SnapshotItem]:
    return list(SnapshotItem.objects.filter(snapshot=snap).order_by("image_id"))


def _evaluate(snap, version, **kw):
    run = evaluation.evaluation_create(snapshot=snap, detector_version=version, recognizer_version=None,
                                       created_by=None, batch_size=kw.pop("batch_size", 2), **kw)
    return evaluation.evaluation_run(run=run)


def test_an_item_whose_source_is_now_non_commercial_is_not_sent_to_an_external_model(model, pipeline_version):
    snap = three_image_snapshot()  # a commercial spec, every item cc-by-4.0 when frozen
    assert snap.intended_use == DatasetSpec.IntendedUse.COMMERCIAL
    items = _items(snap)
    # after the freeze the middle image turns out to belong to a non-commercial source
    Image.objects.filter(pk=items[1].image_id).update(source=factories.make_source("cc-by-nc-sa-3.0"))
    model.replies = [[{"regions": [found(TRUTH_BOX, TRUTH[0])]}, {"regions": [found(TRUTH_BOX, TRUTH[2])]}]]

    run = _evaluate(snap, pipeline_version)

    assert run.status == "done", run.error
    # one request with the two other images; the model fetched exactly their files
    assert [len(r) for r in model.requests] == [2]
    assert sorted(digest for _, _, digest in model.fetched) == sorted([items[0].sha256, items[2].sha256])
    assert run.metrics["licence_excluded"] == [
        {"licence": "cc-by-4.0", "reason": REASON_NOW_NON_COMMERCIAL, "images": 1}]
    assert run.metrics["overall"]["images"] == 2 and run.metrics["overall"]["exact_match"] == 1.0
    assert (run.total, run.processed) == (2, 2)
    assert set(EvaluationSample.objects.filter(run=run).values_list("item_id", flat=True)) == {
        items[0].pk, items[2].pk}
    # the run's page says what was held back and why
    from django.test import Client

    from common import roles

    client = Client()
    client.force_login(factories.make_user(roles.CURATOR))
    html = client.get(f"/evaluations/{run.pk}/").content.decode()
    assert 'id="licence-excluded"' in html and f"1 under cc-by-4.0: {REASON_NOW_NON_COMMERCIAL}" in html


def test_a_spec_made_commercial_after_the_freeze_sends_no_non_commercial_item(model, pipeline_version):
    """The stricter of the frozen and the current intended use decides, as for an export."""
    snap = three_image_snapshot(intended_use=DatasetSpec.IntendedUse.RESEARCH)
    SnapshotItem.objects.filter(snapshot=snap).update(licence={
        **_items(snap)[0].licence, "code": "cc-by-nc-sa-3.0", "allows_commercial": False})
    # frozen research; the spec is commercial now (and its live sources say nothing against it)
    DatasetSpec.objects.filter(pk=snap.spec_id).update(intended_use=DatasetSpec.IntendedUse.COMMERCIAL)
    snap.refresh_from_db()

    run = _evaluate(snap, pipeline_version)

    assert run.status == "done", run.error
    assert model.requests == [] and model.fetched == []  # nothing left the platform
    assert run.metrics["licence_excluded"] == [
        {"licence": "cc-by-nc-sa-3.0", "reason": REASON_NON_COMMERCIAL, "images": 3}]
    assert run.metrics["overall"]["images"] == 0 and run.passed is None
    assert (run.total, run.processed) == (0, 0)


def test_a_research_snapshot_sends_every_test_item(model, pipeline_version):
    snap = three_image_snapshot(intended_use=DatasetSpec.IntendedUse.RESEARCH)
    items = _items(snap)
    Image.objects.filter(pk=items[1].image_id).update(source=factories.make_source("cc-by-nc-sa-3.0"))

    run = _evaluate(snap, pipeline_version, batch_size=3)

    assert run.status == "done", run.error
    assert [len(r) for r in model.requests] == [3]
    assert run.metrics["licence_excluded"] == [] and run.metrics["overall"]["images"] == 3


@pytest.mark.django_db  # not transactional: the run waits for evaluation_run with the stub (no on_commit)
def test_a_local_model_still_sees_every_test_item():
    """In-process models send nothing out: their figures stay over the whole test split."""
    snap = three_image_snapshot()
    items = _items(snap)
    Image.objects.filter(pk=items[1].image_id).update(source=factories.make_source("cc-by-nc-sa-3.0"))
    run = evaluation.evaluation_create(snapshot=snap, detector_version=None,
                                       recognizer_version=services.model_version_builtin(kind="recognizer"),
                                       created_by=None, batch_size=3)
    reader = StubReader(readings=list(TRUTH))

    run = evaluation.evaluation_run(run=run, reader=reader)

    assert run.status == "done", run.error
    assert reader.recognize_batches == [3]
    assert run.metrics["licence_excluded"] == [] and run.metrics["overall"]["images"] == 3
