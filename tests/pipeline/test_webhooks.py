"""Webhooks (pipeline/webhooks.py): registration through the API (secret shown once, the outbound
guard on the URL, owners only), events emitted where the state changes and only to owners who may
see the object, and deliveries POSTed to a real local HTTP server: signed, retried on network
errors and 5xx only, never following a redirect, never sent twice."""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from common import roles
from curation import snapshots
from labeling import services as labeling_services
from pipeline import evaluation, services, webhooks
from pipeline.models import PrelabelItem, Webhook, WebhookDelivery
from pipeline.tasks import webhook_deliver
from tests import factories
from tests.curation.test_snapshots import accepted_spec
from tests.labeling.conftest import client_for
from tests.pipeline.evaluation_helpers import StubReader
from tests.schema import assert_response_matches_schema

pytestmark = pytest.mark.django_db

ALL_EVENTS = sorted(Webhook.Event.values)


class Receiver:
    """A webhook receiver on 127.0.0.1: answers each POST with the next of `statuses` (then 200),
    recording (path, headers, raw body). A 3xx points at /elsewhere on itself."""

    def __init__(self):
        self.hits: list[tuple[str, dict, bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.hits.append((self.path, dict(self.headers), body))
                code = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(code)
                if 300 <= code < 400:
                    self.send_header("Location", f"http://127.0.0.1:{receiver.port}/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def _webhook_settings(settings):
    # any host, loopback included (the receiver runs on 127.0.0.1); link-local and metadata never.
    # The default, "public", is tested in test_webhook_hosts_default.py.
    settings.MATHSET_WEBHOOK_HOSTS = "*"
    settings.MATHSET_WEBHOOK_MAX_ATTEMPTS = 3
    settings.MATHSET_BASE_URL = "https://mathset.example"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _hook(owner, url: str = "http://127.0.0.1:9/hook", events=ALL_EVENTS) -> webhooks.IssuedSecret:
    return webhooks.webhook_create(owner=owner, url=url, events=list(events))


def _deliver(delivery: WebhookDelivery) -> WebhookDelivery:
    """Run the delivery task as a worker would, eagerly: each retry it asks for runs at once
    (Celery re-applies it in place of waiting for the countdown), so no test waits on a clock.
    Eager propagation is off meanwhile, or the first retry's Retry would be raised here."""
    from config.celery import app

    old, app.conf.task_eager_propagates = app.conf.task_eager_propagates, False
    try:
        result = webhook_deliver.delay(delivery.pk)
    finally:
        app.conf.task_eager_propagates = old
    assert result.successful(), result.traceback
    delivery.refresh_from_db()
    return delivery


# ------------------------------------------------------------------------------ the API


@pytest.mark.parametrize("role", [roles.MODEL_TEAM, roles.CURATOR])
def test_creating_shows_the_secret_once_and_never_again(role):
    owner = factories.make_user(role)
    api = client_for(owner)
    r = api.post("/api/v1/webhooks/", {"url": "https://ci.example/mathset", "events": ["snapshot.ready",
                                                                                       "export.ready"]})
    assert r.status_code == 201, r.content
    assert_response_matches_schema(r)
    secret = r.json()["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    webhook = Webhook.objects.get(pk=r.json()["id"])
    assert (webhook.owner, webhook.events, webhook.active) == (owner, ["export.ready", "snapshot.ready"], True)
    assert webhook.secret == secret and r.json()["secret_prefix"] == secret[:12]
    for url in ["/api/v1/webhooks/", f"/api/v1/webhooks/{webhook.pk}/"]:
        again = api.get(url)
        assert again.status_code == 200
        assert_response_matches_schema(again)
        assert secret not in again.content.decode() and "secret" not in json.dumps(again.json()).replace(
            "secret_prefix", "")
    patched = api.patch(f"/api/v1/webhooks/{webhook.pk}/", {"active": False})
    assert patched.status_code == 200 and secret not in patched.content.decode()


def test_rotating_the_secret_shows_the_new_one_once_and_signs_with_it(model_team, receiver):
    api = client_for(model_team)
    created = api.post("/api/v1/webhooks/", {"url": receiver.url, "events": ["export.ready"]}).json()
    r = api.post(f"/api/v1/webhooks/{created['id']}/rotate-secret/")
    assert r.status_code == 201
    assert_response_matches_schema(r)
    new = r.json()["secret"]
    assert new != created["secret"] and Webhook.objects.get(pk=created["id"]).secret == new
    delivery = _deliver(webhooks.webhook_ping(webhook=Webhook.objects.get(pk=created["id"])))
    _, headers, body = receiver.hits[-1]
    assert delivery.status == "delivered"
    assert headers["X-Mathset-Signature"] == "sha256=" + hmac.new(new.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("url, says", [
    ("ftp://ci.example/hook", "http(s)"),
    ("not a url", "space"),
    ("//ci.example/hook", "http(s)"),
    ("", "blank"),
    ("http://169.254.169.254/latest/meta-data/", "link-local, metadata"),  # the cloud metadata service
    ("http://[fe80::1]/hook", "link-local"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://0.0.0.0:8000/hook", "reserved"),
    ("http://admin:hunter2@ci.example/hook", "password"),
    ("http://ci.example:99999/hook", "port"),
    ("https://ci.example/" + "x" * 2000, "2000"),
])
def test_a_url_the_guard_refuses_is_a_400_naming_url_and_stores_nothing(model_team, url, says):
    r = client_for(model_team).post("/api/v1/webhooks/", {"url": url, "events": ["snapshot.ready"]})
    assert r.status_code == 400, r.content
    assert list(r.json()) == ["url"] and says in " ".join(r.json()["url"]), r.json()
    assert not Webhook.objects.exists()


def test_only_the_hosts_the_webhook_setting_lists_are_taken(model_team, settings):
    settings.MATHSET_WEBHOOK_HOSTS = "hooks.example, 10.9.0.0/16"
    api = client_for(model_team)
    r = api.post("/api/v1/webhooks/", {"url": "http://127.0.0.1:8080/hook", "events": ["snapshot.ready"]})
    assert r.status_code == 400 and "MATHSET_WEBHOOK_HOSTS" in r.json()["url"][0]
    assert api.post("/api/v1/webhooks/", {"url": "http://10.9.3.4/hook", "events": ["snapshot.ready"]}).status_code \
        == 201
    # a model host is not thereby a webhook host, nor the other way round
    settings.MATHSET_MODEL_HOSTS = "127.0.0.1"
    assert api.post("/api/v1/webhooks/", {"url": "http://127.0.0.1/h", "events": ["batch.closed"]}).status_code == 400


@pytest.mark.parametrize("events", [[], ["snapshot.built"], "snapshot.ready", ["ping"], None, [["snapshot.ready"]]])
def test_bad_events_are_a_400_naming_events(model_team, events):
    r = client_for(model_team).post("/api/v1/webhooks/", {"url": "https://ci.example/h", "events": events},
                                    format="json")
    assert r.status_code == 400 and "events" in r.json(), r.content
    assert not Webhook.objects.exists()


@pytest.mark.parametrize("role", [roles.ANNOTATOR, roles.REVIEWER, roles.VENDOR_MANAGER])
def test_vendor_people_are_refused_webhooks_outright(role):
    api = client_for(factories.make_user(role))
    assert api.get("/api/v1/webhooks/").status_code == 403
    r = api.post("/api/v1/webhooks/", {"url": "https://ci.example/h", "events": ["batch.closed"]})
    assert r.status_code == 403 and not Webhook.objects.exists()
    with pytest.raises(Exception, match="Only curators and model teams"):
        webhooks.webhook_create(owner=factories.make_user(role), url="https://ci.example/h", events=["batch.closed"])


def test_each_user_sees_and_changes_only_their_own_webhooks(model_team, curator):
    theirs = _hook(model_team).webhook
    mine = _hook(curator).webhook
    api = client_for(curator)  # a curator included: a webhook is its owner's tooling
    assert [w["id"] for w in api.get("/api/v1/webhooks/").json()["results"]] == [mine.pk]
    for method, path in [("get", ""), ("patch", ""), ("delete", ""), ("get", "deliveries/"), ("post", "ping/"),
                         ("post", "rotate-secret/")]:
        r = getattr(api, method)(f"/api/v1/webhooks/{theirs.pk}/{path}", {"active": False})
        assert r.status_code == 404, (method, path)
    delivery = WebhookDelivery.objects.create(webhook=theirs, event="ping", payload={})
    assert api.post(f"/api/v1/webhooks/{mine.pk}/deliveries/{delivery.pk}/redeliver/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.active and WebhookDelivery.objects.count() == 1


def test_one_person_has_at_most_so_many_webhooks(model_team):
    for _ in range(webhooks.MAX_WEBHOOKS_PER_OWNER):
        _hook(model_team)
    r = client_for(model_team).post("/api/v1/webhooks/", {"url": "https://ci.example/h", "events": ["batch.closed"]})
    assert r.status_code == 400 and "delete one" in r.json()["url"][0]
    assert Webhook.objects.count() == webhooks.MAX_WEBHOOKS_PER_OWNER


def test_update_changes_events_and_active_and_checks_a_new_url(model_team):
    webhook = _hook(model_team, events=["snapshot.ready"]).webhook
    api = client_for(model_team)
    r = api.patch(f"/api/v1/webhooks/{webhook.pk}/", {"events": ["batch.closed", "export.ready"], "active": False})
    assert r.status_code == 200, r.content
    assert_response_matches_schema(r)
    assert (r.json()["events"], r.json()["active"]) == (["batch.closed", "export.ready"], False)
    bad = api.patch(f"/api/v1/webhooks/{webhook.pk}/", {"url": "http://169.254.169.254/", "active": True})
    assert bad.status_code == 400 and list(bad.json()) == ["url"]
    webhook.refresh_from_db()
    assert (webhook.url, webhook.active) == ("http://127.0.0.1:9/hook", False)  # nothing half-stored
    assert api.put(f"/api/v1/webhooks/{webhook.pk}/", {"url": "https://x.example/", "events": []}).status_code == 405
    assert api.delete(f"/api/v1/webhooks/{webhook.pk}/").status_code == 204
    assert not Webhook.objects.exists()


def test_list_endpoints_run_a_constant_number_of_queries(model_team):
    api = client_for(model_team)

    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert api.get(url).status_code == 200
        return len(ctx.captured_queries)

    first = _hook(model_team).webhook
    WebhookDelivery.objects.create(webhook=first, event="ping", payload={"event": "ping"})
    one = queries("/api/v1/webhooks/"), queries(f"/api/v1/webhooks/{first.pk}/deliveries/")
    for _ in range(4):
        _hook(model_team)
        WebhookDelivery.objects.create(webhook=first, event="ping", payload={"event": "ping"})
    many = queries("/api/v1/webhooks/"), queries(f"/api/v1/webhooks/{first.pk}/deliveries/")
    assert one == many


def test_deliveries_list_filters_pages_by_cursor_and_matches_the_schema(model_team):
    webhook = _hook(model_team).webhook
    for n in range(3):
        WebhookDelivery.objects.create(webhook=webhook, event="ping", payload={"n": n},
                                       status="failed" if n == 1 else "pending")
    api = client_for(model_team)
    r = api.get(f"/api/v1/webhooks/{webhook.pk}/deliveries/")
    assert r.status_code == 200 and [d["payload"]["n"] for d in r.json()["results"]] == [2, 1, 0]
    assert_response_matches_schema(r)
    failed = api.get(f"/api/v1/webhooks/{webhook.pk}/deliveries/", {"status": "failed"})
    assert [d["payload"]["n"] for d in failed.json()["results"]] == [1]
    assert api.get(f"/api/v1/webhooks/{webhook.pk}/deliveries/", {"status": "lost"}).status_code == 400
    page = api.get(f"/api/v1/webhooks/{webhook.pk}/deliveries/", {"cursor": "", "limit": 2}).json()
    rest = api.get(page["next"]).json()
    assert [d["payload"]["n"] for d in page["results"] + rest["results"]] == [2, 1, 0]


# ------------------------------------------------------------------------------ emitting


def _deliveries(webhook) -> list[WebhookDelivery]:
    return list(WebhookDelivery.objects.filter(webhook=webhook).order_by("id"))


def test_snapshot_ready_and_export_ready_carry_the_objects_and_absolute_urls(model_team, curator):
    hook = _hook(model_team, events=["snapshot.ready", "export.ready"]).webhook
    other = _hook(curator, events=["batch.closed"]).webhook  # not subscribed
    snapshot = factories.make_snapshot(spec=accepted_spec(images=2), created_by=curator)
    (ready,) = _deliveries(hook)
    assert ready.event == "snapshot.ready" and ready.status == "pending"
    assert ready.payload["event"] == "snapshot.ready" and ready.payload["created_at"]
    assert ready.payload["data"]["snapshot"] == {
        "id": snapshot.pk, "name": snapshot.name, "spec": snapshot.spec_id, "status": "ready", "items": 2,
        "split_counts": snapshot.split_counts, "content_hash": snapshot.content_hash,
        "url": f"https://mathset.example/api/v1/snapshots/{snapshot.pk}/",
        "items_url": f"https://mathset.example/api/v1/snapshots/{snapshot.pk}/items/"}
    export = snapshots.export_run(job=snapshots.export_create(snapshot=snapshot, format="coco", created_by=curator))
    assert export.status == "done"
    ready, zipped = _deliveries(hook)
    assert zipped.event == "export.ready"
    assert zipped.payload["data"]["export"] == {
        "id": export.pk, "snapshot": snapshot.pk, "format": "coco", "status": "done", "size": export.size,
        "images": 2, "url": f"https://mathset.example/api/v1/exports/{export.pk}/",
        "download_url": f"https://mathset.example/api/v1/exports/{export.pk}/download/"}
    assert not _deliveries(other)
    # the download URL works with the owner's credentials, as given
    download = client_for(model_team).get(zipped.payload["data"]["export"]["download_url"].removeprefix(
        "https://mathset.example"))
    assert download.status_code == 200


def test_a_failed_or_superseded_build_emits_nothing(model_team, curator, monkeypatch):
    hook = _hook(model_team, events=["snapshot.ready", "export.ready"]).webhook
    snapshot = factories.make_snapshot(spec=accepted_spec(images=1), created_by=curator)
    WebhookDelivery.objects.all().delete()
    monkeypatch.setattr(snapshots, "export_build", lambda **kw: (_ for _ in ()).throw(OSError("disk full")))
    failed = snapshots.export_run(job=snapshots.export_create(snapshot=snapshot, format="coco", created_by=curator))
    assert failed.status == "failed" and not _deliveries(hook)


def test_only_active_subscribed_webhooks_of_owners_who_may_see_it_are_sent_an_event(model_team, curator):
    spec = accepted_spec(images=1)
    subscribed = _hook(model_team, events=["snapshot.ready"]).webhook
    switched_off = _hook(factories.make_user(roles.MODEL_TEAM), events=["snapshot.ready"]).webhook
    webhooks.webhook_update(webhook=switched_off, active=False)
    gone_owner = factories.make_user(roles.MODEL_TEAM)
    deactivated = _hook(gone_owner, events=["snapshot.ready"]).webhook
    gone_owner.is_active = False
    gone_owner.save()
    # a model team member who has since lost the role (and now sees no snapshot)
    demoted_owner = factories.make_user(roles.MODEL_TEAM)
    demoted = _hook(demoted_owner, events=["snapshot.ready"]).webhook
    demoted_owner.groups.clear()
    factories.make_snapshot(spec=spec, created_by=curator)
    assert [len(_deliveries(w)) for w in (subscribed, switched_off, deactivated, demoted)] == [1, 0, 0, 0]


def test_batch_closed_goes_to_curators_but_never_to_a_model_team_that_sees_no_batches(model_team, curator):
    curators_hook = _hook(curator, events=["batch.closed"]).webhook
    teams_hook = _hook(model_team, events=["batch.closed"]).webhook
    batch = factories.make_batch(images=1)
    name = batch.name
    labeling_services.batch_update(batch=batch, by=curator, status="paused")
    assert not _deliveries(curators_hook)  # paused is not closed
    labeling_services.batch_update(batch=batch, by=curator, status="closed")
    labeling_services.batch_update(batch=batch, by=curator, name="Renamed while closed")  # still closed: no event
    (closed,) = _deliveries(curators_hook)
    assert closed.payload["data"]["batch"] == {
        "id": batch.pk, "name": name, "spec": batch.spec_id, "vendor": batch.vendor_id, "status": "closed",
        "url": f"https://mathset.example/api/v1/batches/{batch.pk}/"}
    assert "unit_price" not in json.dumps(closed.payload)
    assert not _deliveries(teams_hook)
    labeling_services.batch_update(batch=batch, by=curator, status="active", reason="More work")
    labeling_services.batch_update(batch=batch, by=curator, status="closed")
    assert len(_deliveries(curators_hook)) == 2


def test_a_rolled_back_change_emits_and_sends_nothing(curator, django_capture_on_commit_callbacks):
    hook = _hook(curator, events=["batch.closed"]).webhook
    batch = factories.make_batch(images=1)
    with django_capture_on_commit_callbacks() as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            labeling_services.batch_update(batch=batch, by=curator, status="closed")
            raise RuntimeError("the caller fails after the close")
    assert not _deliveries(hook) and not callbacks


def test_evaluation_finished_when_done_and_when_cancelled(model_team, curator):
    from pipeline.services import model_version_builtin

    hook = _hook(model_team, events=["evaluation.finished"]).webhook
    snapshot = factories.make_snapshot(spec=accepted_spec(images=1), created_by=curator, ratios=(0, 0, 1))
    detector, recognizer = model_version_builtin(kind="detector"), model_version_builtin(kind="recognizer")
    run = evaluation.evaluation_run(
        run=evaluation.evaluation_create(snapshot=snapshot, detector_version=detector, recognizer_version=recognizer,
                                         created_by=model_team),
        reader=StubReader(detections=[[factories.quad()["points"]]], readings=["x^{2}+1"]))
    assert run.status == "done", run.error
    (finished,) = _deliveries(hook)
    assert finished.payload["data"]["evaluation"] == {
        "id": run.pk, "status": "done", "snapshot": snapshot.pk, "spec": snapshot.spec_id,
        "detector_version": detector.pk, "recognizer_version": recognizer.pk, "passed": run.passed, "error": "",
        "url": f"https://mathset.example/api/v1/evaluations/{run.pk}/"}
    queued = evaluation.evaluation_create(snapshot=snapshot, detector_version=detector, recognizer_version=recognizer,
                                          created_by=model_team)
    evaluation.evaluation_cancel(run=queued)
    assert _deliveries(hook)[-1].payload["data"]["evaluation"]["status"] == "cancelled"
    broken = evaluation.evaluation_run(
        run=evaluation.evaluation_create(snapshot=snapshot, detector_version=detector, recognizer_version=recognizer,
                                         created_by=model_team),
        reader=StubReader(on_detect=lambda: (_ for _ in ()).throw(RuntimeError("out of memory"))))
    assert broken.status == "failed"
    last = _deliveries(hook)[-1].payload["data"]["evaluation"]
    assert (last["id"], last["status"], "out of memory" in last["error"]) == (broken.pk, "failed", True)
    assert len(_deliveries(hook)) == 3


def test_prelabel_job_finished_when_done_and_when_cancelled(model_team, curator, spec, source):
    hook = _hook(model_team, events=["prelabel_job.finished"]).webhook
    images = [factories.make_image(spec=spec, source=source, data=factories.png_bytes(80, 40)) for _ in range(2)]
    job = services.prelabel_job_create(created_by=curator, images=images)  # its chunks wait for the commit
    assert not _deliveries(hook)
    PrelabelItem.objects.filter(job=job, image=images[0]).update(status="done")
    PrelabelItem.objects.filter(job=job, image=images[1]).update(status="failed", error="corrupt")
    services.prelabel_chunk_run(job_id=job.pk, image_ids=[])  # a late chunk finds every image tried
    (done,) = _deliveries(hook)
    assert done.payload["data"]["prelabel_job"] == {
        "id": job.pk, "status": "done", "spec": None, "total": 2, "done": 1, "skipped": 0, "failed": 1,
        "url": f"https://mathset.example/api/v1/prelabel-jobs/{job.pk}/"}
    other = services.prelabel_job_create(created_by=curator, images=images, force=True)
    services.prelabel_job_cancel(job=other)
    assert _deliveries(hook)[-1].payload["data"]["prelabel_job"]["status"] == "cancelled"


# ------------------------------------------------------------------------------ delivering


def test_a_delivery_is_posted_signed_with_the_event_and_its_id(model_team, receiver, django_capture_on_commit_callbacks):
    issued = _hook(model_team, url=receiver.url, events=["batch.closed", "snapshot.ready"])
    with django_capture_on_commit_callbacks(execute=True):
        snapshot = factories.make_snapshot(spec=accepted_spec(images=1))
    (delivery,) = _deliveries(issued.webhook)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code, delivery.error) == ("delivered", 1, 200, "")
    assert delivery.delivered_at is not None
    ((path, headers, body),) = receiver.hits
    assert path == "/hook" and headers["Content-Type"] == "application/json"
    assert headers["X-Mathset-Event"] == "snapshot.ready" and headers["X-Mathset-Delivery"] == str(delivery.pk)
    expected = hmac.new(issued.secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Mathset-Signature"], f"sha256={expected}")
    assert json.loads(body)["data"]["snapshot"]["id"] == snapshot.pk
    assert json.loads(body) == delivery.payload


def test_a_5xx_is_retried_until_it_arrives(model_team, receiver):
    receiver.statuses = [500, 503]
    delivery = _deliver(webhooks.webhook_ping(webhook=_hook(model_team, url=receiver.url).webhook))
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("delivered", 3, 200)
    assert len(receiver.hits) == 3
    assert len({h["X-Mathset-Delivery"] for _, h, _ in receiver.hits}) == 1  # one delivery, tried three times


def test_retries_stop_after_the_configured_tries(model_team, receiver):
    receiver.statuses = [502] * 10
    delivery = _deliver(webhooks.webhook_ping(webhook=_hook(model_team, url=receiver.url).webhook))
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", 3, 502)
    assert "HTTP 502" in delivery.error and "3 tries" in delivery.error and len(receiver.hits) == 3


def test_a_network_error_is_retried_and_recorded_without_the_receivers_body(model_team):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    delivery = _deliver(webhooks.webhook_ping(webhook=_hook(model_team, url=f"http://127.0.0.1:{port}/h").webhook))
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", 3, None)
    assert f"127.0.0.1:{port}" in delivery.error


@pytest.mark.parametrize("code", [400, 404, 410])
def test_a_4xx_is_final_and_not_retried(model_team, receiver, code):
    receiver.statuses = [code]
    delivery = _deliver(webhooks.webhook_ping(webhook=_hook(model_team, url=receiver.url).webhook))
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", 1, code)
    assert len(receiver.hits) == 1 and "ok" not in delivery.error  # the receiver's body is not kept


def test_a_redirect_is_not_followed(model_team, receiver):
    receiver.statuses = [302]
    delivery = _deliver(webhooks.webhook_ping(webhook=_hook(model_team, url=receiver.url).webhook))
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", 1, 302)
    assert [path for path, _, _ in receiver.hits] == ["/hook"]  # /elsewhere never asked
    assert "redirect" in delivery.error


def test_a_delivered_one_is_never_sent_again_and_redelivery_is_a_new_delivery(model_team, receiver,
                                                                             django_capture_on_commit_callbacks):
    webhook = _hook(model_team, url=receiver.url).webhook
    delivery = _deliver(webhooks.webhook_ping(webhook=webhook))
    assert delivery.status == "delivered"
    _deliver(delivery)  # a duplicate message
    webhooks.webhook_delivery_attempt(delivery_id=delivery.pk)
    assert len(receiver.hits) == 1
    api = client_for(model_team)
    with django_capture_on_commit_callbacks(execute=True):
        r = api.post(f"/api/v1/webhooks/{webhook.pk}/deliveries/{delivery.pk}/redeliver/")
    assert r.status_code == 202, r.content
    assert_response_matches_schema(r)
    again = WebhookDelivery.objects.get(pk=r.json()["id"])
    assert again.pk != delivery.pk and (again.status, again.payload) == ("delivered", delivery.payload)
    assert len(receiver.hits) == 2 and json.loads(receiver.hits[1][2]) == delivery.payload
    assert receiver.hits[1][1]["X-Mathset-Delivery"] == str(r.json()["id"])
    before = (delivery.status, delivery.attempts, delivery.delivered_at)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.delivered_at) == before


def test_ping_through_the_api_reaches_the_receiver(model_team, receiver, django_capture_on_commit_callbacks):
    webhook = _hook(model_team, url=receiver.url, events=["export.ready"]).webhook
    api = client_for(model_team)
    with django_capture_on_commit_callbacks(execute=True):
        r = api.post(f"/api/v1/webhooks/{webhook.pk}/ping/")
    assert r.status_code == 202
    assert_response_matches_schema(r)
    # the answer is given before the commit (here, the test's transaction) lets the worker send it
    assert (r.json()["event"], r.json()["status"]) == ("ping", "pending")
    ping = WebhookDelivery.objects.get(pk=r.json()["id"])
    assert (ping.status, ping.attempts, ping.response_code) == ("delivered", 1, 200)
    ((_, headers, body),) = receiver.hits
    assert headers["X-Mathset-Event"] == "ping" and json.loads(body)["data"]["webhook"]["id"] == webhook.pk
    listed = api.get(f"/api/v1/webhooks/{webhook.pk}/deliveries/")
    assert [d["id"] for d in listed.json()["results"]] == [r.json()["id"]]
    webhooks.webhook_update(webhook=webhook, active=False)
    refused = api.post(f"/api/v1/webhooks/{webhook.pk}/ping/")
    assert refused.status_code == 400 and "active" in refused.json()


def test_the_guard_is_applied_again_at_delivery(model_team, receiver, settings):
    webhook = _hook(model_team, url=receiver.url).webhook
    pending = webhooks.webhook_ping(webhook=webhook)
    # the hosts allowed have changed since the webhook was registered
    settings.MATHSET_WEBHOOK_HOSTS = "hooks.example"
    pending = _deliver(pending)
    assert (pending.status, pending.attempts) == ("failed", 1) and "MATHSET_WEBHOOK_HOSTS" in pending.error
    # a row pointed at the metadata service behind the services' back
    settings.MATHSET_WEBHOOK_HOSTS = "*"
    Webhook.objects.filter(pk=webhook.pk).update(url="http://169.254.169.254/latest/meta-data/")
    metadata = _deliver(webhooks.webhook_ping(webhook=Webhook.objects.get(pk=webhook.pk)))
    assert (metadata.status, metadata.attempts) == ("failed", 1) and "link-local" in metadata.error
    assert not receiver.hits


def test_a_webhook_switched_off_or_an_owner_demoted_meanwhile_is_sent_nothing(model_team, receiver):
    webhook = _hook(model_team, url=receiver.url).webhook
    pending = webhooks.webhook_ping(webhook=webhook)
    webhooks.webhook_update(webhook=webhook, active=False)
    assert _deliver(pending).status == "failed"
    webhooks.webhook_update(webhook=webhook, active=True)
    pending = webhooks.webhook_ping(webhook=webhook)
    model_team.groups.clear()
    assert _deliver(pending).status == "failed" and not receiver.hits


def test_patching_bad_values_is_a_400_naming_the_field_and_changes_nothing(model_team):
    webhook = _hook(model_team, events=["snapshot.ready"]).webhook
    api = client_for(model_team)
    for body, field in [({"url": "http://ci.example/\x00"}, "url"), ({"events": ["\x00"]}, "events"),
                        ({"events": []}, "events"), ({"active": "maybe"}, "active"), ({"url": 7}, "url"),
                        ({"url": "https://ci.example/ok", "events": ["nope"]}, "events")]:
        r = api.patch(f"/api/v1/webhooks/{webhook.pk}/", body, format="json")
        assert r.status_code == 400 and field in r.json(), (body, r.content)
    webhook.refresh_from_db()
    assert (webhook.url, webhook.events, webhook.active) == ("http://127.0.0.1:9/hook", ["snapshot.ready"], True)


def test_the_sweep_resends_only_pending_deliveries_left_untried(model_team, receiver, settings):
    from datetime import timedelta

    from django.utils import timezone

    webhook = _hook(model_team, url=receiver.url).webhook
    long_ago = timezone.now() - timedelta(seconds=webhooks.STALE_PENDING_SECONDS + 60)
    lost, waiting, done = (WebhookDelivery.objects.create(webhook=webhook, event="ping", payload={"n": n})
                           for n in range(3))
    WebhookDelivery.objects.filter(pk=lost.pk).update(created_at=long_ago)
    WebhookDelivery.objects.filter(pk=done.pk).update(created_at=long_ago, status="delivered")
    # `waiting` was tried a moment ago and waits for its next try
    WebhookDelivery.objects.filter(pk=waiting.pk).update(created_at=long_ago, last_attempt_at=timezone.now(),
                                                         attempts=1)
    from config.celery import app

    old, app.conf.task_eager_propagates = app.conf.task_eager_propagates, False
    try:
        assert webhooks.webhook_deliveries_resend_stale() == [lost.pk]
    finally:
        app.conf.task_eager_propagates = old
    assert [json.loads(body)["n"] for _, _, body in receiver.hits] == [0]
    assert WebhookDelivery.objects.get(pk=lost.pk).status == "delivered"
    # beat runs it
    app.loader.import_default_modules()
    entry = settings.CELERY_BEAT_SCHEDULE["webhook-deliveries-sweep"]
    assert entry["task"] in app.tasks and app.tasks[entry["task"]]() == []


@pytest.mark.django_db(transaction=True)
def test_a_delivery_being_sent_is_skipped_by_a_second_worker_not_sent_twice(settings):
    """PostgreSQL: the first worker holds the row while its POST runs; a duplicate message handled
    meanwhile by another worker finds it locked and sends nothing."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL")
    from tests.pg_threads import start_thread

    entered, release = threading.Event(), threading.Event()
    receiver = Receiver()
    original = receiver.server.RequestHandlerClass.do_POST

    def slow_post(handler):
        entered.set()
        release.wait(30)
        original(handler)

    receiver.server.RequestHandlerClass.do_POST = slow_post
    try:
        webhook = _hook(factories.make_user(roles.MODEL_TEAM), url=receiver.url).webhook
        # recorded, not queued: each "worker" here is called by the test
        delivery = WebhookDelivery.objects.create(webhook=webhook, event="ping", payload={"event": "ping"})
        results = [None]
        first = start_thread(lambda: webhooks.webhook_delivery_attempt(delivery_id=delivery.pk), results, 0)
        assert entered.wait(30)
        second = webhooks.webhook_delivery_attempt(delivery_id=delivery.pk)
        release.set()
        first.join(30)
        assert second.delivery is None and second.retry_in is None
        assert results[0].delivery.status == "delivered" and len(receiver.hits) == 1
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == ("delivered", 1)
    finally:
        release.set()
        receiver.close()


def test_the_admin_shows_webhooks_without_their_secret_and_deliveries_read_only(client, curator, model_team):
    issued = _hook(model_team)
    delivery = webhooks.webhook_ping(webhook=issued.webhook)
    client.force_login(curator)
    for url in ["/admin/pipeline/webhook/", f"/admin/pipeline/webhook/{issued.webhook.pk}/change/",
                "/admin/pipeline/webhookdelivery/", f"/admin/pipeline/webhookdelivery/{delivery.pk}/change/"]:
        page = client.get(url)
        assert page.status_code == 200, url
        assert issued.secret not in page.content.decode(), url
    assert client.get(f"/admin/pipeline/webhookdelivery/{delivery.pk}/delete/").status_code == 403
    r = client.post("/admin/pipeline/webhook/", {"action": "webhooks_switched_off",
                                                 "_selected_action": [issued.webhook.pk]})
    assert r.status_code == 302
    issued.webhook.refresh_from_db()
    assert not issued.webhook.active
