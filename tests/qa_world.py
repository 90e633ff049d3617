"""A small labeling world whose quota progress and QA statistics are worked out by hand.

Spec with the built-in categories (quota 10 each). Vendors V1 (0.25 USD per task) and V2
(0.40 USD). Every task is one 200x100 image; the curator reviews.

* Task A (V1, printed, overlap 2): a1 draws box(10,10,90,40) "x^2" and box(100,50,150,80)
  "\\frac12" (30 s); a2 draws box(20,10,100,40) "x^{2}" (IoU 2100/2700 = 7/9, LaTeX equal
  after normalising) and box(100,50,150,80) "\\frac{1}{3}" (IoU 1, 1 of 7 tokens differs) (50 s).
  a1 accepted; a2 rejected (latex_error, wrong_region): the task is "rejected".
* Task C (V1, printed): a1 draws one region (10 s), accepted.
* Task G (V2, printed, gold "a+b" at box(10,10,90,40)): b1 answers that box with "a+b" plus
  an extra region (20 s), accepted: recall 1, precision 1/2, IoU 1, exact 1.
* Task P (V2, handwritten, pre-labeled by det@1 with 3 regions): b1 keeps one (IoU 1, same
  LaTeX), moves one (IoU 1200/1800 = 2/3, "z+1" -> "z+2": 1 of 3 tokens), deletes one, adds
  one; 40 s, rejected (missing_formula), resubmitted after 20 s more, accepted.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.models import User

from common import roles
from curation.models import DatasetSpec
from labeling import services as ls
from labeling.models import Annotation, Batch, Prediction, Task, Vendor
from tests import factories
from tests.factories import quad


@dataclass
class QAWorld:
    spec: DatasetSpec
    v1: Vendor
    v2: Vendor
    a1: User
    a2: User
    b1: User
    curator: User
    manager1: User
    tasks: dict[str, Task]
    prediction: Prediction


def _batch(spec, vendor, *, price: str, overlap: int = 1, categories=("printed",)) -> Batch:
    factories.make_image(spec=spec, data=factories.png_bytes(200, 100), categories=categories)
    return ls.batch_create(spec=spec, vendor=vendor, name=f"Batch {vendor.name} {categories[0]} {overlap}",
                           unit_price=Decimal(price), quantity=1, overlap=overlap, kind="full")


def _work(annotator, regions, seconds, *, started_from=None):
    claim = ls.task_claim_next(annotator=annotator)
    assert claim.task is not None, claim
    return ls.annotation_create(task=claim.task, annotator=annotator, regions=regions, time_spent_seconds=seconds,
                                started_from=started_from, submit=True)


def make_qa_world() -> QAWorld:
    spec = factories.make_spec()
    v1, v2 = factories.make_vendor("V1"), factories.make_vendor("V2")
    a1 = factories.make_user(roles.ANNOTATOR, vendor=v1, username="a1")
    a2 = factories.make_user(roles.ANNOTATOR, vendor=v1, username="a2")
    b1 = factories.make_user(roles.ANNOTATOR, vendor=v2, username="b1")
    manager1 = factories.make_user(roles.VENDOR_MANAGER, vendor=v1, username="m1")
    curator = factories.make_user(roles.CURATOR, username="cur")

    batch_a = _batch(spec, v1, price="0.25", overlap=2)
    ann_a1 = _work(a1, [quad(10, 10, 90, 40, "x^2"), quad(100, 50, 150, 80, r"\frac12")], 30)
    ann_a2 = _work(a2, [quad(20, 10, 100, 40, "x^{2}"), quad(100, 50, 150, 80, r"\frac{1}{3}")], 50)
    ls.review_create(annotation=ann_a1, reviewer=curator, decision="accept")
    ls.review_create(annotation=ann_a2, reviewer=curator, decision="reject", reasons=["latex_error", "wrong_region"])

    batch_c = _batch(spec, v1, price="0.25")
    ann_c = _work(a1, [quad(10, 10, 90, 40, "y")], 10)
    ls.review_create(annotation=ann_c, reviewer=curator, decision="accept")

    batch_g = _batch(spec, v2, price="0.40")
    ls.task_set_gold(task=batch_g.tasks.get(), answer={"latex": "a+b", "regions": [quad(10, 10, 90, 40, "a+b")]})
    ann_g = _work(b1, [quad(10, 10, 90, 40, "a+b"), quad(100, 50, 150, 80, "c")], 20)
    ls.review_create(annotation=ann_g, reviewer=curator, decision="accept")

    batch_p = _batch(spec, v2, price="0.40", categories=("handwritten",))
    task_p = batch_p.tasks.get()
    [prediction] = ls.predictions_import(model_name="det", model_version="1", items=[{"image": task_p.image_id, "regions": [
        # the model's confidences: the kept "y" came out right, the moved "z+1" was corrected, "w" deleted
        {**quad(10, 10, 90, 40, "y"), "confidence": 0.9}, {**quad(100, 50, 150, 80, "z+1"), "confidence": 0.6},
        {**quad(20, 60, 60, 90, "w"), "confidence": 0.3}]}])
    answer = [quad(10, 10, 90, 40, "y"), quad(110, 50, 160, 80, "z+2"), quad(160, 10, 190, 30, "q")]
    ann_p = _work(b1, answer, 40, started_from=prediction)
    ls.review_create(annotation=ann_p, reviewer=curator, decision="reject", reasons=["missing_formula"])
    ann_p = Annotation.objects.get(pk=ann_p.pk)
    ls.annotation_update(annotation=ann_p, by=b1, version=ann_p.version, regions=answer, time_spent_seconds=20,
                         submit=True)
    ls.review_create(annotation=Annotation.objects.get(pk=ann_p.pk), reviewer=curator, decision="accept")

    tasks = {k: b.tasks.get() for k, b in {"A": batch_a, "C": batch_c, "G": batch_g, "P": batch_p}.items()}
    return QAWorld(spec, v1, v2, a1, a2, b1, curator, manager1, tasks, prediction)


@dataclass
class LatexGoldWorld:
    spec: DatasetSpec
    curator: User
    right: User
    wrong: User
    latex_only: Task
    boxed: Task


def make_latex_gold_world() -> LatexGoldWorld:
    """Gold answers with and without regions, worked out by hand.

    Vendor V (0.10 USD), annotators ``right`` and ``wrong``; 200x100 images.

    * Task L (overlap 2): an imported truth "a+b" without an ink box, so its gold answer holds
      LaTeX and no region. ``right`` draws one region "a + b" (exact after normalising);
      ``wrong`` draws "c" and "a+c": the best of the two is "a+c", 1 of 3 tokens off.
    * Task B: a curator's gold answer "y" at box(10,10,90,40); ``right`` answers that box with
      "y": recall 1, precision 1, IoU 1, exact 1.
    """
    spec = factories.make_spec()
    vendor = factories.make_vendor("V")
    right = factories.make_user(roles.ANNOTATOR, vendor=vendor, username="right")
    wrong = factories.make_user(roles.ANNOTATOR, vendor=vendor, username="wrong")
    curator = factories.make_user(roles.CURATOR, username="cur")

    factories.make_image(spec=spec, data=factories.png_bytes(200, 100), categories=("handwritten",),
                         truth_latex="a+b")
    batch_l = ls.batch_create(spec=spec, vendor=vendor, name="Imported truths", unit_price=Decimal("0.10"),
                              quantity=1, overlap=2, kind="full")
    latex_only = batch_l.tasks.get()
    assert latex_only.is_gold and "regions" not in latex_only.gold_answer
    _work(right, [quad(10, 10, 90, 40, "a + b")], 10)
    _work(wrong, [quad(10, 10, 50, 40, "c"), quad(100, 10, 190, 40, "a+c")], 10)

    batch_b = _batch(spec, vendor, price="0.10")
    boxed = batch_b.tasks.get()
    ls.task_set_gold(task=boxed, answer={"latex": "y", "regions": [quad(10, 10, 90, 40, "y")]})
    _work(right, [quad(10, 10, 90, 40, "y")], 10)
    return LatexGoldWorld(spec, curator, right, wrong, Task.objects.get(pk=latex_only.pk), boxed)
