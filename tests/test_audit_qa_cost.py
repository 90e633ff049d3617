"""Audit of the cost per formula in the QA statistics (pipeline/stats.py) on overlapped tasks,
worked out by hand."""
from __future__ import annotations

from decimal import Decimal

import pytest

from common import roles
from labeling import services as ls
from pipeline.stats import spec_stats_compute
from tests import factories
from tests.factories import quad

pytestmark = [pytest.mark.django_db,
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]


def test_an_overlapped_task_counts_its_formulas_once():
    """One image, overlap 2, 0.60 USD per task: a1 answers two formulas, a2 (the later answer,
    the one a snapshot keeps) three; both accepted. The vendor is paid 0.60 for the task and the
    data set gains the three formulas of one answer, so a formula costs 0.20, not 0.60 / 5 = 0.12
    (both answers' regions used to be counted, making overlapped work look cheaper per formula)."""
    spec = factories.make_spec()
    vendor = factories.make_vendor("V")
    a1, a2 = (factories.make_user(roles.ANNOTATOR, vendor=vendor, username=n) for n in ("a1", "a2"))
    curator = factories.make_user(roles.CURATOR, username="cur")
    factories.make_image(spec=spec, data=factories.png_bytes(200, 100))
    ls.batch_create(spec=spec, vendor=vendor, name="Overlapped", unit_price=Decimal("0.60"), quantity=1, overlap=2,
                    kind="full")
    answers = {
        a1: [quad(10, 10, 90, 40, "x"), quad(100, 50, 150, 80, "y")],
        a2: [quad(10, 10, 90, 40, "x"), quad(100, 50, 150, 80, "y"), quad(160, 10, 190, 30, "z")],
    }
    for annotator, regions in answers.items():
        task = ls.task_claim_next(annotator=annotator).task
        done = ls.annotation_create(task=task, annotator=annotator, regions=regions, submit=True)
        ls.review_create(annotation=done, reviewer=curator, decision="accept")

    t = spec_stats_compute(spec=spec).payload["throughput"]
    v = {r["name"]: r for r in t["by_vendor"]}["V"]
    assert (t["overall"]["accepted_tasks"], t["overall"]["accepted_formulas"]) == (1, 3)
    assert (v["accepted_tasks"], v["accepted_formulas"]) == (1, 3)
    assert v["cost"] == {"USD": "0.6000"} and t["overall"]["cost"] == {"USD": "0.6000"}
    assert v["cost_per_formula"] == {"USD": "0.200000"}
    assert t["overall"]["cost_per_formula"] == {"USD": "0.200000"}
    # Every annotation handed in still counts for the time spent.
    assert t["overall"]["annotations"] == 2

    # The formulas counted are those the data set holds.
    snapshot = factories.make_snapshot(spec=spec, name="s1", created_by=curator)
    assert sum(len(item.regions) for item in snapshot.items.all()) == 3
