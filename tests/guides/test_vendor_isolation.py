"""Another vendor's guides-area data is never visible: one walk over every URL
pattern of the guides API, as a foreign vendor's manager (the widest vendor role)."""
import datetime as dt
import re

import pytest

from common import roles
from guides import costs, services
from guides.api.urls import urlpatterns
from guides.models import Contract, FaqEntry, GuideAcknowledgement, GuideExample, Notification, Question
from tests import factories

QUAD = [[20, 10], [180, 10], [180, 60], [20, 60]]
_ROWS: dict = {}


def fixture_rows(*, vendor_ids=None, spec_ids=None):
    """Cost rows for both vendors; the selector must drop the foreign ones."""
    rows = [r for r in _ROWS["rows"] if vendor_ids is None or r.vendor_id in vendor_ids]
    return rows, list(_ROWS["batches"])


@pytest.fixture
def world(vendor, annotator, contract, curator, example_image, foreign_vendor, settings):
    """Vendor A's data on its spec, and vendor B (the intruder) with a contract of its own."""
    spec = contract.spec
    v1 = factories.make_guide(spec=spec, by=curator, publish=False)
    services.guide_example_add(version=v1, image=example_image, kind="good", regions=[QUAD])
    services.guide_version_publish(version=v1, by=curator)
    question = services.question_ask(asked_by=annotator, spec=spec, title="Secret question of A", body="B",
                                     guide_version=v1, image=example_image, region=QUAD)
    services.question_answer(question=question, author=curator, body="A")
    services.question_promote_to_faq(question=question, by=curator)
    v2 = services.guide_version_create(guide=v1.guide, created_by=curator)
    services.guide_version_publish(version=v2, by=curator)
    ack = services.guide_acknowledge(version=v2, user=annotator)
    foreign_spec = factories.make_spec()
    foreign_contract = factories.make_contract(vendor=foreign_vendor, spec=foreign_spec)
    intruder = factories.make_user(roles.VENDOR_MANAGER, vendor=foreign_vendor)
    intruder_own_question = services.question_ask(asked_by=intruder, spec=foreign_spec, title="B's", body="b")
    _ROWS["rows"] = [costs.TaskRow(vendor_id=vendor.id, spec_id=spec.id, kind="full", status="accepted", batch_id=1,
                                   accepted_on=dt.date(2026, 3, 1), count=7),
                     costs.TaskRow(vendor_id=foreign_vendor.id, spec_id=foreign_spec.id, kind="full",
                                   status="accepted", batch_id=2, accepted_on=dt.date(2026, 3, 1), count=3)]
    _ROWS["batches"] = [costs.BatchInfo(batch_id=1, name="A batch", vendor_id=vendor.id, spec_id=spec.id, target=10,
                                        started_on=dt.date(2026, 1, 1), deadline=dt.date(2026, 2, 1)),
                        costs.BatchInfo(batch_id=2, name="B batch", vendor_id=foreign_vendor.id,
                                        spec_id=foreign_spec.id, target=3, started_on=dt.date(2026, 1, 1))]
    settings.MATHSET_COST_ROWS_PROVIDER = "tests.guides.test_vendor_isolation.fixture_rows"
    return {
        "guide": v1.guide, "guide-version": v2, "guide-example": GuideExample.objects.filter(version=v2).get(),
        "guide-acknowledgement": ack, "faq": FaqEntry.objects.get(version=v2), "question": question,
        "notification": Notification.objects.filter(user=annotator).first(), "contract": contract,
        "intruder": intruder, "own_question": intruder_own_question, "foreign_contract": foreign_contract,
        "a_vendor": vendor,
    }


def _routes():
    for pattern in urlpatterns:
        regex = str(pattern.pattern)  # a router's regex, or a path() route
        if "(?P<format>" in regex or pattern.name == "api-root":
            continue  # format-suffix duplicates and the API root
        view = pattern.callback.cls
        if getattr(pattern.callback, "actions", None):  # a router's viewset route
            methods = [m for m in list(pattern.callback.actions) if m in view.http_method_names]
            basename = pattern.callback.initkwargs.get("basename")
        else:  # a plain APIView
            methods = [m for m in ("get", "post", "patch", "put", "delete") if hasattr(view, m)]
            basename = pattern.name
        yield regex, basename, [m for m in methods if m not in ("head", "options")], "(?P<pk>" in regex


def _url(regex: str, pk=None) -> str:
    path = re.sub(r"\(\?P<pk>[^)]+\)", str(pk), regex).lstrip("^").rstrip("$")
    return "/api/v1/" + path


def test_foreign_vendor_sees_nothing_of_another_vendor_on_any_route(world, api, annotator):
    api.force_authenticate(world["intruder"])
    walked = 0
    counts_before = (Question.objects.count(), GuideAcknowledgement.objects.count(), Contract.objects.count())
    for regex, basename, actions, detail in _routes():
        walked += 1
        if detail:
            target = world[basename]
            for method in actions:
                url = _url(regex, target.pk)
                response = getattr(api, method)(url, {}, format="json")
                assert response.status_code == 404, (method, url, response.status_code)
            continue
        for method in actions:
            url = _url(regex)
            if method == "get":
                response = api.get(url, {"vendor": world["a_vendor"].id})
                assert response.status_code in (200, 400, 403), (url, response.status_code)
                text = response.content.decode()
                assert "Secret question of A" not in text, url
                assert annotator.username not in text, url
                if response.status_code == 200 and response["Content-Type"].startswith("application/json") \
                        and "results" in response.json():
                    ids = {row["id"] for row in response.json()["results"]}
                    if basename in world:
                        assert world[basename].pk not in ids, url
            else:
                # Creating anything that points at A's objects fails without writing.
                payload = {"spec": world["contract"].spec_id, "guide": world["guide"].id, "title": "x", "body": "y",
                           "version": world["guide-version"].id, "image": world["guide-example"].image_id,
                           "kind": "good", "vendor": world["a_vendor"].id}
                response = getattr(api, method)(url, payload, format="json")
                if url.endswith("/read-all/"):  # acts on one's own notifications only
                    world["notification"].refresh_from_db()
                    assert world["notification"].read_at is None
                    continue
                assert response.status_code in (400, 403), (method, url, response.status_code)
    assert (Question.objects.count(), GuideAcknowledgement.objects.count(), Contract.objects.count()) == counts_before
    assert walked == len({r for r, *_ in _routes()}) >= 20


def test_foreign_vendor_cost_report_has_only_their_own_lines(world, api):
    api.force_authenticate(world["intruder"])
    report = api.get("/api/v1/cost-report/").json()
    assert [(b["name"], b["accepted_total"]) for b in report["batches"]] == [("B batch", 3)]
    assert report["totals"] == {"USD": "0.9000"}
    assert api.get("/api/v1/cost-report/", {"vendor": world["a_vendor"].id}).json()["batches"] == []
    csv_text = api.get("/api/v1/cost-report/csv/").content.decode()
    assert "A batch" not in csv_text and "B batch" in csv_text


def test_foreign_vendor_sees_own_question_but_not_the_other(world, api):
    api.force_authenticate(world["intruder"])
    ids = [q["id"] for q in api.get("/api/v1/questions/").json()["results"]]
    assert ids == [world["own_question"].id]


def test_every_json_get_of_the_guides_api_matches_the_schema(world, curator_api, api):
    """Responses conform to the OpenAPI schema, for a curator and for a vendor manager."""
    from tests.schema import assert_response_matches_schema

    checked = 0
    for client in (curator_api, api):
        if client is api:
            client.force_authenticate(factories.make_user(roles.VENDOR_MANAGER, vendor=world["a_vendor"]))
        for regex, basename, methods, detail in _routes():
            if "get" not in methods or regex.endswith(("overlay/$", "crop/$", "image/$", "csv/$", "csv/")):
                continue
            url = _url(regex, world[basename].pk) if detail else _url(regex)
            response = client.get(url)
            if response.status_code == 200:
                assert_response_matches_schema(response)
                checked += 1
    assert checked >= 20


def test_every_route_refuses_anonymous_callers(world, api):
    for regex, basename, methods, detail in _routes():
        url = _url(regex, world[basename].pk) if detail else _url(regex)
        for method in methods:
            response = getattr(api, method)(url, {}, format="json")
            assert response.status_code in (401, 403), (method, url, response.status_code)
