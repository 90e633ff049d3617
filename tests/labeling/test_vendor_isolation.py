"""Vendor isolation, proven by walking every URL pattern of the site (API and pages)
as each kind of vendor user, with the ids of another vendor's objects.

Another vendor's data carries a marker string in every name; no response may
contain it. Detail routes with a foreign id must answer exactly like a route
with an id that does not exist (404 for reads), so not even existence leaks.
Lists, even filtered by the foreign ids, must not contain a foreign row, and
writes aimed at foreign objects must change nothing.
"""
from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from common import roles
from curation import services as curation_services
from curation import snapshots as curation_snapshots
from curation.models import Category, ImportJob, Licence
from guides import services as guides_services
from guides.models import FaqEntry
from labeling import services
from labeling.models import Annotation, Prediction, Review, Task
from pipeline import evaluation as pipeline_evaluation
from pipeline import services as pipeline_services
from pipeline import stats as pipeline_stats
from pipeline import webhooks as pipeline_webhooks
from tests import factories
from tests.factories import quad
from tests.labeling.conftest import client_for
from tests.pipeline.evaluation_helpers import StubReader

pytestmark = pytest.mark.django_db

MARK = "FOREIGNxq"  # in every name of the other vendor's data
MISSING = 987654321
SKIP_PREFIXES = ("admin/", "api/schema/", "api/docs/", "api/redoc/", "static/", "media/", "accounts/")


def walk(patterns, prefix=""):
    """(route string, pattern) for every URL pattern, nested includes flattened."""
    for p in patterns:
        route = prefix + str(p.pattern).replace("^", "").replace("$", "")
        if isinstance(p, URLResolver):
            yield from walk(p.url_patterns, route)
        elif isinstance(p, URLPattern):
            yield route, p


def fill(route: str, value) -> str | None:
    """A concrete path for a route, every parameter set to `value`; None for format-suffix routes."""
    if "format" in route:
        return None
    path = re.sub(r"\(\?P<\w+>[^)]*\)", str(value), route)
    path = re.sub(r"<(?:\w+:)?\w+>", str(value), path)
    return "/" + path.replace("\\.", ".").replace("\\", "")


@pytest.fixture
def world(db):
    """Vendor A (the users we walk as) and vendor B (foreign), each with a full set of work."""
    worlds = {}
    for label in ("A", MARK):
        vendor = factories.make_vendor(f"Vendor {label}")
        spec = factories.make_spec(name=f"Spec {label}")
        source = factories.make_source(name=f"Source {label}", copyright_holder=f"Holder {label}")
        batch = factories.make_batch(spec, vendor, images=3, name=f"Batch {label}", source=source)
        people = {role: factories.make_user(role, vendor=vendor, username=f"{role}-{label}")
                  for role in (roles.ANNOTATOR, roles.REVIEWER, roles.VENDOR_MANAGER)}
        ann_user, rev_user = people[roles.ANNOTATOR], people[roles.REVIEWER]
        task = services.task_claim_next(annotator=ann_user).task
        annotation = services.annotation_create(task=task, annotator=ann_user, submit=True,
                                                regions=[quad(latex=rf"\text{{{label}}}")])
        review = services.review_create(annotation=annotation, reviewer=rev_user, decision="reject",
                                        reasons=["other"], comment=f"comment {label}")
        # A snapshot of accepted work (a second annotator's task) and an export of it; before
        # the guide below is published, which would gate claiming.
        snapshot_curator = factories.make_user(roles.CURATOR)
        second = factories.make_user(roles.ANNOTATOR, vendor=vendor, username=f"annotator2-{label}")
        accepted = services.annotation_create(task=services.task_claim_next(annotator=second).task, annotator=second,
                                              submit=True, regions=[quad(latex=rf"\text{{{label}}}")])
        services.review_create(annotation=accepted, reviewer=rev_user, decision="accept")
        snapshot = factories.make_snapshot(spec=spec, name=f"Snapshot {label}", created_by=snapshot_curator)
        export = curation_snapshots.export_run(job=curation_snapshots.export_create(
            snapshot=snapshot, format="coco", created_by=snapshot_curator))
        assert export.status == "done", export.error
        # An offline evaluation (with samples) on an all-test snapshot whose name carries the marker.
        eval_snapshot = factories.make_snapshot(spec=spec, name=f"Eval {label}", created_by=snapshot_curator,
                                                ratios=(0, 0, 1))
        evaluation_run = pipeline_evaluation.evaluation_run(
            run=pipeline_evaluation.evaluation_create(
                snapshot=eval_snapshot, detector_version=pipeline_services.model_version_builtin(kind="detector"),
                recognizer_version=pipeline_services.model_version_builtin(kind="recognizer"),
                created_by=snapshot_curator),
            reader=StubReader(detections=[[quad()["points"]]], readings=[rf"\text{{{label}}}"]))
        assert evaluation_run.status == "done", evaluation_run.error
        image = task.image
        prediction = services.predictions_import(model_name=f"model-{label}", model_version="1",
                                                 items=[{"image": image.id, "regions": [quad()]}])[0]
        job = ImportJob.objects.create(spec=spec, source=source, archive=f"{label}.zip")
        # Guides, questions, notifications and contracts of this vendor's spec.
        contract = factories.make_contract(vendor=vendor, spec=spec)
        version = factories.make_guide(spec=spec, body=f"Guide {label}: one quad per formula.",
                                       title=f"Guide {label}", publish=False)
        example = guides_services.guide_example_add(version=version, image=image, kind="good",
                                                    caption=f"Example {label}")
        version = guides_services.guide_version_publish(version=version, by=factories.make_user(roles.CURATOR))
        ack = guides_services.guide_acknowledge(version=version, user=ann_user)
        question = guides_services.question_ask(asked_by=ann_user, spec=spec, title=f"Question {label}",
                                                body=f"How to label {label}?", guide_version=version)
        notification = guides_services.notifications_create(users=[ann_user], kind="answer",
                                                            message=f"Note {label}", question=question)[0]
        curator = factories.make_user(roles.CURATOR)
        guides_services.question_answer(question=question, author=curator, body=f"Answer {label}")
        guides_services.question_promote_to_faq(question=question, by=curator)
        guides_services.guide_version_create(guide=version.guide, created_by=curator)  # takes the FAQ entry
        faq = FaqEntry.objects.get(version__guide__spec=spec)
        # Pipeline: models and jobs are curator/model-team business; predictions follow their image.
        detector = pipeline_services.model_version_builtin(kind="detector")
        prelabel_job = pipeline_services.prelabel_job_create(created_by=curator, images=[image])
        model_prediction = pipeline_services.prediction_store(
            image=image, job=prelabel_job, detector_version=detector, recognizer_version=None,
            regions=[{"points": [[10, 10], [90, 10], [90, 40], [10, 40]], "score": 0.9, "latex": label}])
        # A takedown (of an image nothing else here uses): curators' business only.
        gone = factories.make_image(spec=spec, source=source, data=factories.png_bytes(61, 33, seed=len(label)),
                                    categories=())
        takedown = curation_services.image_takedown(image=gone, kind="copyright", reason=f"Request {label}",
                                                    requested_by=f"Holder {label}", actor=curator)
        # A webhook (curators' and model teams' tooling: vendor people own none), with a delivery;
        # at a public address, as the default MATHSET_WEBHOOK_HOSTS wants (never called here).
        webhook = pipeline_webhooks.webhook_create(owner=snapshot_curator, url=f"http://93.184.216.34/{label}",
                                                   events=["batch.closed"]).webhook
        pipeline_webhooks.webhook_ping(webhook=webhook)
        worlds[label] = dict(vendor=vendor, spec=spec, source=source, batch=batch, task=task, image=image,
                             annotation=annotation, review=review, prediction=prediction, job=job,
                             category=Category.objects.filter(spec=spec).first(), people=people,
                             contract=contract, guide=version.guide, version=version, example=example, ack=ack,
                             question=question, notification=notification, faq=faq, detector=detector,
                             prelabel_job=prelabel_job, model_prediction=model_prediction, snapshot=snapshot,
                             export=export, evaluation_run=evaluation_run,
                             qa_report=pipeline_stats.spec_stats_compute(spec=spec), takedown=takedown,
                             webhook=webhook)
    return worlds


# Readable by every signed-in user by design: no vendor's data.
PUBLIC_MODELS = {Licence}


def foreign_ids(b: dict) -> dict[type, list[int]]:
    """The other vendor's objects, by model."""
    objs = [b["vendor"], b["spec"], b["source"], b["batch"], b["task"], b["image"], b["annotation"], b["review"],
            b["prediction"], b["job"], b["category"], *b["people"].values(), b["contract"], b["guide"],
            b["version"], b["example"], b["ack"], b["question"], b["notification"]]
    objs += [b["faq"], b["detector"], b["prelabel_job"], b["model_prediction"], b["snapshot"], b["export"],
             b["evaluation_run"]]
    objs += [b["qa_report"], b["takedown"], b["webhook"]]
    out: dict[type, list[int]] = {}
    for o in objs:
        out.setdefault(type(o), []).append(o.pk)
    return out


def model_of(pattern, curator) -> type | None:
    """The model a DRF viewset route serves (None for plain Django views)."""
    cls = getattr(pattern.callback, "cls", None)
    if cls is None or not hasattr(cls, "get_queryset"):
        return None
    view = cls()
    view.request = type("R", (), {"user": curator, "query_params": {}, "method": "GET"})()
    view.action, view.kwargs, view.format_kwarg, view.args = "retrieve", {}, None, ()
    return view.get_queryset().model


def foreign_rows_state(b: dict) -> tuple:
    return (
        list(Annotation.objects.filter(task__batch=b["batch"]).values_list("id", "status", "version")),
        list(Task.objects.filter(batch=b["batch"]).values_list("id", "status", "slots_taken", "is_gold")),
        list(Review.objects.filter(annotation__task__batch=b["batch"]).values_list("id", "decision")),
        list(Prediction.objects.filter(image__spec=b["spec"]).values_list("id", "model_name", "regions")),
        b["batch"].__class__.objects.filter(pk=b["batch"].pk).values_list("status", "unit_price").get(),
    )


def body_text(response) -> str:
    if hasattr(response, "streaming_content"):
        return ""  # files: their bytes are images, checked by status only
    return response.content.decode("utf-8", "replace")


@pytest.mark.parametrize("role", [roles.ANNOTATOR, roles.REVIEWER, roles.VENDOR_MANAGER])
def test_vendor_users_never_see_or_change_another_vendors_data_on_any_url(world, role):
    me, them = world["A"][("people")][role], world[MARK]
    api = client_for(me)
    routes = [(r, p) for r, p in walk(get_resolver().url_patterns) if not r.startswith(SKIP_PREFIXES)]
    assert any(r.startswith("api/v1/tasks") for r, _ in routes)  # the walk really sees the API
    before = foreign_rows_state(them)
    by_model = foreign_ids(them)
    every_id = sorted({i for ids in by_model.values() for i in ids})
    curator = factories.make_user(roles.CURATOR)
    payload = {"task": them["task"].pk, "annotation": them["annotation"].pk, "spec": them["spec"].pk,
               "vendor": them["vendor"].pk, "batch": them["batch"].pk, "image": them["image"].pk,
               "version": 1, "decision": "accept", "regions": [quad()], "model_name": "x", "model_version": "1",
               "items": [{"image": them["image"].pk, "regions": []}], "unit_price": "1", "quantity": 1,
               "username": f"new-{role}", "password": "pass-word-123", "role": roles.ANNOTATOR}
    checked = 0
    for route, pattern in routes:
        has_param = bool(re.search(r"<|\(\?P<", route))
        methods = sorted(getattr(pattern.callback, "actions", {}) or {"get": None})
        for method in methods:
            if method in ("head", "options"):
                continue
            if has_param:
                model = model_of(pattern, curator)
                if model in PUBLIC_MODELS:
                    continue
                # A new API route whose model this test does not seed must be added to the world.
                assert model is None or model in by_model, f"{route}: seed an object of {model} for the other vendor"
                for fid in (by_model[model] if model else every_id):
                    path = fill(route, fid)
                    if path is None:
                        continue
                    r = getattr(api, method)(path, payload, format="json") if method != "get" else api.get(path)
                    missing = getattr(api, method)(fill(route, MISSING), payload, format="json") \
                        if method != "get" else api.get(fill(route, MISSING))
                    assert MARK not in body_text(r), (method, path)
                    if model is None:  # a page: its id may be ours in another table
                        continue
                    assert r.status_code == missing.status_code, (method, path, r.status_code, missing.status_code)
                    if method == "get":
                        assert r.status_code in (302, 403, 404), (path, r.status_code)
                    checked += 1
            else:
                path = fill(route, 0)
                if path is None:
                    continue
                query = "&".join(f"{k}={them[k].pk}" for k in ("vendor", "spec", "batch", "task", "image",
                                                                "annotation"))
                if method == "get":
                    for url in (path, f"{path}?{query}"):
                        r = api.get(url)
                        assert r.status_code < 500, (url, r.status_code)
                        assert MARK not in body_text(r), url
                else:
                    r = getattr(api, method)(path, payload, format="json")
                    assert r.status_code < 500, (method, path, r.status_code, r.content[:200])
                    assert MARK not in body_text(r), (method, path)
                checked += 1
    assert checked > 50
    assert foreign_rows_state(them) == before


def test_vendor_users_see_their_own_vendors_work(world):
    a = world["A"]
    for role in (roles.ANNOTATOR, roles.REVIEWER, roles.VENDOR_MANAGER):
        api = client_for(a["people"][role])
        assert api.get(f"/api/v1/batches/{a['batch'].pk}/").status_code == 200
        assert api.get(f"/api/v1/tasks/{a['task'].pk}/").status_code == 200
        assert api.get(f"/api/v1/specs/{a['spec'].pk}/").status_code == 200
        assert api.get(f"/api/v1/images/{a['image'].pk}/").status_code == 200
        assert api.get("/api/v1/tasks/").json()["count"] == 3
    reviewer = client_for(a["people"][roles.REVIEWER])
    assert reviewer.get(f"/api/v1/annotations/{a['annotation'].pk}/").status_code == 200
    # another annotator of the same vendor does not see a colleague's annotation
    colleague = client_for(factories.make_user(roles.ANNOTATOR, vendor=a["vendor"]))
    assert colleague.get(f"/api/v1/annotations/{a['annotation'].pk}/").status_code == 404
