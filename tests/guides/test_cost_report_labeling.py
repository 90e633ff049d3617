"""The cost report over real labeling rows: accepted tasks are paid at the contract's
price for the batch's task kind; rejected work is not."""
from decimal import Decimal

import pytest

from common import roles
from guides import selectors
from labeling import services as labeling
from tests import factories
from tests.factories import quad

pytestmark = pytest.mark.django_db


def _label(annotator, reviewer, decision):
    task = labeling.task_claim_next(annotator=annotator).task
    annotation = labeling.annotation_create(task=task, annotator=annotator, submit=True, regions=[quad()])
    labeling.review_create(annotation=annotation, reviewer=reviewer, decision=decision,
                           reasons=[] if decision == "accept" else ["latex_error"], comment="")


def test_accepted_tasks_are_paid_and_rejected_work_is_not():
    vendor = factories.make_vendor()
    spec = factories.make_spec()
    factories.make_contract(vendor=vendor, spec=spec, price_full=Decimal("0.30"), currency="USD")
    batch = factories.make_batch(spec, vendor, images=3, kind="full")
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    _label(annotator, reviewer, "accept")
    _label(annotator, reviewer, "accept")
    _label(annotator, reviewer, "reject")

    report, contracts, available = selectors.cost_report_for(user=factories.make_user(roles.CURATOR))
    assert available and [c.vendor_id for c in contracts] == [vendor.id]
    (line,) = [b for b in report.batches if b.batch_id == batch.id]
    assert (line.accepted_total, line.rejected, line.amount) == (2, 1, Decimal("0.60"))
    assert report.totals == {"USD": Decimal("0.60")}
