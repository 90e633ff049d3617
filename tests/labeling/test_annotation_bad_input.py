"""Every kind of bad annotation input answers 400 naming the field and saves nothing."""
from __future__ import annotations

import json

import numpy as np
import pytest

from common import rle
from common.latex import normalize as latex_normalize
from labeling.models import Annotation, AnnotationVersion, Claim, Prediction, Region
from tests.factories import make_spec, make_vendor, quad

pytestmark = pytest.mark.django_db

W, H = 200, 100  # the factory batch's image size


def _mask(width=W, height=H, empty=False):
    m = np.zeros((height, width), bool)
    if not empty:
        m[10:30, 20:60] = True
    return rle.encode(m)


def post_json(api, url, payload):
    """POST raw JSON; "__1e999__" becomes the number 1e999, which Python reads as infinity."""
    body = json.dumps(payload).replace('"__1e999__"', "1e999")
    return api.generic("POST", url, body, content_type="application/json")


def _counts():
    return (Annotation.objects.count(), AnnotationVersion.objects.count(), Region.objects.count(),
            Claim.objects.filter(state="annotated").count())


BAD_REGIONS = [
    ("three points", [{"kind": "quad", "points": [[1, 1], [50, 1], [50, 50]]}], "regions[0].points", "exactly 4"),
    ("five points", [{"kind": "quad", "points": [[1, 1], [50, 1], [50, 50], [1, 50], [2, 2]]}], "regions[0].points",
     "exactly 4"),
    ("infinite coordinate", [{"kind": "quad", "points": [[1, 1], ["__1e999__", 1], [50, 50], [1, 50]]}],
     "regions[0].points", "finite"),
    ("NaN as a string", [{"kind": "quad", "points": [[1, 1], ["NaN", 1], [50, 50], [1, 50]]}],
     "regions[0].points", "two numbers"),
    ("self-intersecting bow tie", [{"kind": "quad", "points": [[10, 10], [90, 40], [90, 10], [10, 40]]}],
     "regions[0].points", "not simple"),
    ("zero area", [{"kind": "quad", "points": [[10, 10], [20, 10], [30, 10], [40, 10]]}], "regions[0].points", ""),
    ("far outside the image", [quad(10, 10, 900, 40)], "regions[0].points", "outside"),
    ("mask of the wrong size", [{"kind": "mask", "mask": _mask(W + 1, H), "latex": "x"}], "regions[0].mask",
     "but the image is"),
    ("empty mask", [{"kind": "mask", "mask": _mask(empty=True), "latex": "x"}], "regions[0].mask", "empty"),
    ("RLE that does not decode", [{"kind": "mask", "mask": {"size": [H, W], "counts": "!!!!"}}], "regions[0].mask",
     "decode"),
    ("RLE garbage that pycocotools would accept", [{"kind": "mask", "mask": {"size": [H, W], "counts": "zzzz"}}],
     "regions[0].mask", "not valid RLE"),
    ("unbalanced LaTeX", [quad(), quad(latex=r"\frac{a}{b")], "regions[1].latex", "brace"),
    ("begin/end mismatch", [quad(latex=r"\begin{matrix} a \end{pmatrix}")], "regions[0].latex", ""),
    ("unknown LaTeX command", [quad(latex=r"\frobnicate{x}")], "regions[0].latex", "frobnicate"),
    ("NUL in the LaTeX", [quad(latex="x\x00y")], "regions[0].latex", "U+0000"),  # PostgreSQL cannot store it
    ("control character in the LaTeX", [quad(latex="x\x1by")], "regions[0].latex", "U+001B"),
    ("lone surrogate in the LaTeX", [quad(latex="x\ud800y")], "regions[0].latex", "U+D800"),  # PostgreSQL: a 500
    ("1 MB of LaTeX", [quad(latex="x" * 1_000_000)], "regions[0].latex", "characters"),
    ("LaTeX nested too deeply", [quad(latex="x^{" * 600 + "1" + "}" * 600)], "regions[0].latex", "nested"),
    ("commands chained too deeply", [quad(), quad(latex=r"\frac" * 700 + "1")], "regions[1].latex", "nested"),
    ("10,000 regions", [quad()] * 10_000, "regions", "at most"),
    ("unknown kind", [{"kind": "circle"}], "regions[0].kind", ""),
    ("unknown category", [quad(categories=["nope"])], "regions[0].categories", "nope"),
    ("flag not a boolean", [quad(illegible="yes")], "regions[0].illegible", ""),
    ("not a list", {"kind": "quad"}, "regions", ""),
]


@pytest.mark.parametrize(("what", "regions", "field", "says"), BAD_REGIONS, ids=[c[0] for c in BAD_REGIONS])
def test_bad_region_on_create_is_refused_and_nothing_saved(batch, annotator_api, what, regions, field, says):
    task_id = annotator_api.post("/api/v1/tasks/next/").json()["task"]["id"]
    before = _counts()
    r = post_json(annotator_api, "/api/v1/annotations/", {"task": task_id, "regions": regions})
    assert r.status_code == 400, r.content[:300]
    assert field in r.json(), r.json()
    assert says in " ".join(r.json()[field])
    assert _counts() == before
    assert Claim.objects.get(task_id=task_id).state == "live"  # the lease is untouched


@pytest.mark.parametrize(("what", "regions", "field", "says"), BAD_REGIONS[:12:3], ids=[c[0] for c in BAD_REGIONS[:12:3]])
def test_bad_region_on_update_keeps_the_current_version(batch, annotator_api, what, regions, field, says):
    task_id = annotator_api.post("/api/v1/tasks/next/").json()["task"]["id"]
    ann = annotator_api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()]}).json()
    before = _counts()
    r = annotator_api.put(f"/api/v1/annotations/{ann['id']}/", {"version": 1, "regions": regions})
    assert r.status_code == 400 and field in r.json()
    assert _counts() == before
    assert Annotation.objects.get(pk=ann["id"]).version == 1


def test_nan_literal_in_json_is_refused(batch, annotator_api):
    task_id = annotator_api.post("/api/v1/tasks/next/").json()["task"]["id"]
    before = _counts()
    body = json.dumps({"task": task_id, "regions": [quad()]}).replace("[10, 10]", "[NaN, 10]")
    assert "NaN" in body
    r = annotator_api.generic("POST", "/api/v1/annotations/", body, content_type="application/json")
    assert r.status_code == 400
    assert _counts() == before


def test_nan_point_reaching_the_service_names_the_field(batch, annotator):
    from django.core.exceptions import ValidationError

    from labeling import services

    result = services.task_claim_next(annotator=annotator)
    with pytest.raises(ValidationError) as exc:
        services.annotation_create(task=result.task, annotator=annotator,
                                   regions=[{"kind": "quad", "points": [[1, 1], [float("nan"), 1], [5, 5], [1, 5]]}])
    assert "regions[0].points" in exc.value.error_dict
    assert Annotation.objects.count() == 0


def test_submit_without_latex_on_a_full_task_is_refused(batch, annotator_api):
    task_id = annotator_api.post("/api/v1/tasks/next/").json()["task"]["id"]
    before = _counts()
    r = annotator_api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad(latex="")], "submit": True})
    assert r.status_code == 400 and "regions[0].latex" in r.json()
    assert _counts() == before


def test_time_spent_must_be_sane(batch, annotator_api):
    task_id = annotator_api.post("/api/v1/tasks/next/").json()["task"]["id"]
    r = annotator_api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()],
                                                    "time_spent_seconds": -5})
    assert r.status_code == 400 and "time_spent_seconds" in r.json()
    assert Annotation.objects.count() == 0


def test_bad_prediction_import_saves_nothing(batch, model_team):
    from tests.labeling.conftest import client_for

    api = client_for(model_team)
    image_ids = list(batch.tasks.values_list("image_id", flat=True))
    items = [{"image": image_ids[0], "regions": [quad()]},
             {"image": image_ids[1], "regions": [quad(10, 10, 5000, 40)]}]
    r = api.post("/api/v1/predictions/bulk/", {"model_name": "m", "model_version": "1", "items": items})
    assert r.status_code == 400 and "items[1].regions[0].points" in r.json()
    r = api.post("/api/v1/predictions/bulk/", {"model_name": "m", "model_version": "1",
                                               "items": [{"image": 10**9, "regions": []}]})
    assert r.status_code == 400 and "items[0].image" in r.json()
    r = api.post("/api/v1/predictions/bulk/", {"model_name": "m", "model_version": "1",
                                               "items": [{"image": image_ids[0], "confidence": 7}]})
    assert r.status_code == 400 and "items[0].confidence" in r.json()
    assert Prediction.objects.count() == 0


def test_bad_batch_input_saves_nothing(curator_api, spec, vendor, source):
    from labeling.models import Batch, Task
    from tests.factories import make_image

    make_image(spec=spec, source=source)
    base = {"spec": spec.id, "vendor": vendor.id, "unit_price": "0.1", "quantity": 5}
    for change, field in [({"unit_price": "-1"}, "unit_price"), ({"quantity": 0}, "quantity"),
                          ({"categories": ["nope"]}, "categories"), ({"currency": "$$"}, "currency"),
                          ({"spec": 10**9}, "spec"), ({"vendor": 10**9}, "vendor"), ({"overlap": 0}, "overlap")]:
        r = curator_api.post("/api/v1/batches/", {**base, **change})
        assert r.status_code == 400 and field in r.json(), (change, r.content)
    assert Batch.objects.count() == 0 and Task.objects.count() == 0


@pytest.mark.parametrize("task_id", [2**63, 10**20, -(2**63) - 1])
def test_task_id_beyond_64_bits_is_an_unknown_task_not_a_database_error(batch, annotator_api, task_id):
    annotator_api.post("/api/v1/tasks/next/")
    before = _counts()
    r = post_json(annotator_api, "/api/v1/annotations/", {"task": task_id, "regions": [quad()]})
    assert r.status_code == 400 and "task" in r.json(), r.content[:300]
    assert _counts() == before


def test_prediction_import_with_ids_or_confidences_beyond_range_names_the_item(batch, model_team):
    from tests.labeling.conftest import client_for

    api = client_for(model_team)
    image_id = batch.tasks.values_list("image_id", flat=True).first()
    for items, field in [([{"image": 2**63}], "items[0].image"), ([{"image": 10**20}], "items[0].image"),
                         ([{"image": image_id, "confidence": 10**400}], "items[0].confidence"),
                         ([{"image": image_id, "regions": [{**quad(), "confidence": 10**400}]}],
                          "items[0].regions[0].confidence")]:
        r = post_json(api, "/api/v1/predictions/bulk/", {"model_name": "m", "model_version": "1", "items": items})
        assert r.status_code == 400 and field in r.json(), (items, r.content[:300])
    assert Prediction.objects.count() == 0


@pytest.mark.parametrize(("answer", "field"), [
    ({}, "gold_answer"),                                # nothing to score answers against
    ({"foo": 1}, "gold_answer.foo"),
    ({"latex": 5}, "gold_answer.latex"),
    ({"latex": ["x"]}, "gold_answer.latex"),             # str() of it would pass the LaTeX check
    ({"latex": "x", "latex_normalized": 1}, "gold_answer.latex_normalized"),
    ({"latex_normalized": "x"}, "gold_answer.latex_normalized"),
    ({"latex": "x\x00"}, "gold_answer.latex"),        # PostgreSQL's jsonb cannot hold U+0000
])
def test_gold_answer_holds_latex_or_regions_of_the_right_types(batch, curator_api, answer, field):
    task = batch.tasks.first()
    r = curator_api.post(f"/api/v1/tasks/{task.id}/gold/", {"gold_answer": answer}, format="json")
    assert r.status_code == 400 and field in r.json(), r.content[:300]
    task.refresh_from_db()
    assert not task.is_gold and task.gold_answer is None


def test_batch_update_refuses_a_currency_that_batch_create_refuses(batch, curator_api):
    for currency in ["us", "-1", "12", "$$$", "ÄÖÜ"]:
        r = curator_api.patch(f"/api/v1/batches/{batch.id}/", {"currency": currency}, format="json")
        assert r.status_code == 400 and "currency" in r.json(), (currency, r.content[:300])
    batch.refresh_from_db()
    assert batch.currency == "USD"
    r = curator_api.patch(f"/api/v1/batches/{batch.id}/", {"currency": "eur"}, format="json")
    assert r.status_code == 200 and r.json()["currency"] == "EUR"


@pytest.mark.parametrize(("change", "field"), [
    ({"vendor": "OTHER_VENDOR"}, "vendor"),
    ({"spec": "OTHER_SPEC"}, "spec"),
    ({"overlap": 3}, "overlap"),
    ({"kind": "latex"}, "kind"),
    ({"quantity": 50}, "quantity"),
    ({"only_unlabeled": False}, "only_unlabeled"),
])
def test_batch_patch_refuses_what_only_making_a_batch_sets_and_stores_nothing(batch, curator_api, change, field):
    others = {"OTHER_VENDOR": lambda: make_vendor().id, "OTHER_SPEC": lambda: make_spec().id}
    change = {k: others[v]() if v in others else v for k, v in change.items()}
    before = curator_api.get(f"/api/v1/batches/{batch.id}/").json()
    r = curator_api.patch(f"/api/v1/batches/{batch.id}/", {**change, "name": "Renamed"}, format="json")
    assert r.status_code == 400 and r.json() == {field: ["This field cannot be changed."]}, r.content[:300]
    assert curator_api.get(f"/api/v1/batches/{batch.id}/").json() == before


def test_batch_sent_back_whole_with_a_new_name_is_saved(batch, curator_api):
    body = curator_api.get(f"/api/v1/batches/{batch.id}/").json()
    r = curator_api.patch(f"/api/v1/batches/{batch.id}/", {**body, "name": "Renamed"}, format="json")
    assert r.status_code == 200 and r.json()["name"] == "Renamed", r.content[:300]


def test_annotation_put_naming_another_task_is_refused_and_saves_nothing(batch, annotator_api):
    task_id = annotator_api.post("/api/v1/tasks/next/").json()["task"]["id"]
    ann = annotator_api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()]}).json()
    before = _counts()
    other = batch.tasks.exclude(pk=task_id).first()
    r = annotator_api.put(f"/api/v1/annotations/{ann['id']}/", {"version": 1, "task": other.id,
                                                                 "regions": [quad(latex="y")]})
    assert r.status_code == 400 and r.json() == {"task": ["This field cannot be changed."]}
    assert _counts() == before and Annotation.objects.get(pk=ann["id"]).version == 1
    # Its own task sent along is no change.
    r = annotator_api.put(f"/api/v1/annotations/{ann['id']}/", {"version": 1, "task": task_id,
                                                                 "regions": [quad(latex="y")]})
    assert r.status_code == 200 and r.json()["version"] == 2, r.content[:300]


def test_gold_answer_read_back_from_an_imported_truth_is_accepted_with_its_normal_form_recomputed(batch, curator_api):
    task = batch.tasks.first()
    answer = {"latex": r"\frac{a}{b}", "latex_normalized": "\x00 not the normal form",
              "regions": [quad(latex=r"\frac{a}{b}")]}
    r = curator_api.post(f"/api/v1/tasks/{task.id}/gold/", {"gold_answer": answer}, format="json")
    assert r.status_code == 200, r.content[:300]
    task.refresh_from_db()
    assert task.is_gold and task.gold_answer["latex_normalized"] == latex_normalize(r"\frac{a}{b}")


@pytest.mark.parametrize("body", [["task"], "task", ["name"], 5])
def test_batch_and_annotation_updates_whose_body_is_not_an_object_are_a_400(batch, curator_api, annotator_api, body):
    r = curator_api.patch(f"/api/v1/batches/{batch.id}/", body, format="json")
    assert r.status_code == 400 and "non_field_errors" in r.json(), r.content[:300]
    task_id = annotator_api.post("/api/v1/tasks/next/").json()["task"]["id"]
    ann = annotator_api.post("/api/v1/annotations/", {"task": task_id, "regions": [quad()]}, format="json").json()
    before = _counts()
    for method in (annotator_api.put, annotator_api.patch):
        r = method(f"/api/v1/annotations/{ann['id']}/", body, format="json")
        assert r.status_code == 400, r.content[:300]
    assert _counts() == before
