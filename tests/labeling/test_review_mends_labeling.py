"""Review mends of batch history and accept-with-corrections: the history selector starts from
the user (another vendor's batch has none for them), a reviewer's corrected version keeps the
prediction the annotator started from, and a contract's prices are recorded as batch_update
records them (`services._event_changes`)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from common import roles
from labeling import selectors, services
from labeling.models import Annotation, Batch, BatchEvent
from tests import factories
from tests.factories import quad

pytestmark = pytest.mark.django_db


def test_batch_history_is_empty_for_a_user_who_may_not_see_the_batch(batch, vendor, curator):
    services.batch_update(batch=Batch.objects.get(pk=batch.pk), by=curator, name="Renamed")
    own_manager = factories.make_user(roles.VENDOR_MANAGER, vendor=vendor)
    stranger = factories.make_user(roles.VENDOR_MANAGER, vendor=factories.make_vendor())
    assert selectors.batch_history(batch, own_manager).count() == BatchEvent.objects.filter(batch=batch).count() >= 2
    assert selectors.batch_history(batch, curator).count() >= 2
    assert not selectors.batch_history(batch, stranger).exists()


def test_contract_prices_record_only_what_changed_at_four_places(batch, curator):
    stored = Batch.objects.get(pk=batch.pk)
    same = {kind: stored.unit_price for kind in ("regions", "latex", "full")}
    assert services.batches_contract_price(vendor_id=batch.vendor_id, spec_id=batch.spec_id, prices=same,
                                           currency=stored.currency, by=curator) == 0
    new = {kind: Decimal("0.5") for kind in ("regions", "latex", "full")}
    assert services.batches_contract_price(vendor_id=batch.vendor_id, spec_id=batch.spec_id, prices=new,
                                           currency=stored.currency, by=curator, reason="Contract") == 1
    event = BatchEvent.objects.filter(batch=batch).order_by("at", "id").last()
    assert event.kind == BatchEvent.Kind.CHANGED and event.reason == "Contract"
    assert event.changes == {"unit_price": [services._event_value(stored.unit_price), "0.5000"]}


def test_a_corrected_version_keeps_the_prediction_the_answer_started_from(spec, vendor, annotator):
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    batch = factories.make_batch(spec, vendor, images=1)
    task = services.task_claim_next(annotator=annotator).task
    [prediction] = services.predictions_import(model_name="m", model_version="1",
                                               items=[{"image": task.image_id, "regions": [quad(latex="x")]}])
    annotation = services.annotation_create(task=task, annotator=annotator, submit=True, started_from=prediction,
                                            regions=[quad(latex=r"x^{2}+l")])
    assert task.batch_id == batch.pk
    services.review_create(annotation=annotation, reviewer=reviewer, decision="accept",
                           corrections={"0": r"x^{2}+1"})
    fresh = Annotation.objects.get(pk=annotation.pk)
    assert fresh.version == 2 and fresh.current.author_id == reviewer.pk
    assert fresh.current.started_from_id == prediction.pk


@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b"])
def test_a_reason_postgresql_cannot_store_is_refused_by_the_service(batch, curator, bad):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as exc:
        services.batch_update(batch=Batch.objects.get(pk=batch.pk), by=curator, name="Renamed", reason=bad)
    assert "reason" in exc.value.message_dict
    assert Batch.objects.get(pk=batch.pk).name != "Renamed"
