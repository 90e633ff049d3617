"""Webhooks, three gaps closed (pipeline/webhooks.py):

- failure events: a snapshot build or an export that fails (in the worker, or given up by the
  sweep) is announced as ``snapshot.failed`` / ``export.failed``, with the recorded error, to
  owners who may see it, as the ready events are;
- sight re-checked when sending: a delivery queued while its owner could see the object is not
  sent once they no longer may (their role changed, the object is gone), through the same
  selectors as when it was queued; pings are exempt;
- one try has a total deadline (``MATHSET_WEBHOOK_TIMEOUT_S``): a receiver that drips its
  answer a byte at a time, each byte well within the socket timeout, is cut off at the deadline
  and the try is recorded as a retryable failure naming it.

Receivers are real sockets on 127.0.0.1, as in test_webhooks.py.
"""
from __future__ import annotations

import json
import socket
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from common import roles
from curation import snapshots
from curation.models import Export, Snapshot
from labeling import services as labeling_services
from pipeline import webhooks
from pipeline.models import Webhook, WebhookDelivery
from tests import factories
from tests.curation.test_snapshots import accepted_spec
from tests.labeling.conftest import client_for
from tests.pipeline.test_webhooks import Receiver, _deliver

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _webhook_settings(settings):
    settings.MATHSET_WEBHOOK_HOSTS = "*"  # the receivers run on 127.0.0.1
    settings.MATHSET_WEBHOOK_MAX_ATTEMPTS = 3
    settings.MATHSET_BASE_URL = "https://mathset.example"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _hook(owner, events, url: str = "http://127.0.0.1:9/hook") -> Webhook:
    return webhooks.webhook_create(owner=owner, url=url, events=list(events)).webhook


def _deliveries(webhook) -> list[WebhookDelivery]:
    return list(WebhookDelivery.objects.filter(webhook=webhook).order_by("id"))


def _role(user, role: str) -> None:
    """Give `user` exactly `role` (the role cache on the object is dropped)."""
    from django.contrib.auth.models import Group

    user.groups.set([Group.objects.get(name=role)])
    if hasattr(user, "_mathset_roles"):
        del user._mathset_roles


# ------------------------------------------------------------------------------ failure events


def test_a_failed_snapshot_build_sends_snapshot_failed_with_its_error(model_team, curator, monkeypatch):
    teams = _hook(model_team, ["snapshot.failed"])
    curators = _hook(curator, ["snapshot.ready", "snapshot.failed"])
    ready_only = _hook(factories.make_user(roles.MODEL_TEAM), ["snapshot.ready"])
    spec = accepted_spec(images=1)
    monkeypatch.setattr(snapshots, "_freeze", lambda snapshot: (_ for _ in ()).throw(OSError("disk full")))
    snapshot = factories.make_snapshot(spec=spec, created_by=curator)
    assert snapshot.status == "failed"
    (failed,) = _deliveries(teams)
    assert failed.event == "snapshot.failed" and failed.status == "pending"
    assert failed.payload["event"] == "snapshot.failed" and failed.payload["created_at"]
    assert failed.payload["data"]["snapshot"] == {
        "id": snapshot.pk, "name": snapshot.name, "spec": spec.pk, "status": "failed",
        "error": "OSError: disk full", "url": f"https://mathset.example/api/v1/snapshots/{snapshot.pk}/"}
    assert [d.event for d in _deliveries(curators)] == ["snapshot.failed"]
    assert not _deliveries(ready_only)
    # what the payload says, the owner reads through the API as well
    shown = client_for(model_team).get(f"/api/v1/snapshots/{snapshot.pk}/").json()
    assert (shown["status"], shown["error"]) == ("failed", "OSError: disk full")


def test_a_failed_export_sends_export_failed_with_its_error(model_team, curator, monkeypatch):
    hook = _hook(model_team, ["export.ready", "export.failed"])
    snapshot = factories.make_snapshot(spec=accepted_spec(images=1), created_by=curator)
    monkeypatch.setattr(snapshots, "export_build", lambda **kw: (_ for _ in ()).throw(OSError("disk full")))
    export = snapshots.export_run(job=snapshots.export_create(snapshot=snapshot, format="coco", created_by=curator))
    assert export.status == "failed"
    (failed,) = _deliveries(hook)
    assert failed.event == "export.failed"
    assert failed.payload["data"]["export"] == {
        "id": export.pk, "snapshot": snapshot.pk, "spec": snapshot.spec_id, "format": "coco", "status": "failed",
        "error": "disk full", "url": f"https://mathset.example/api/v1/exports/{export.pk}/"}
    assert "download_url" not in json.dumps(failed.payload)  # there is nothing to download


def test_a_build_or_export_the_sweep_gives_up_on_sends_the_failed_event(model_team, curator):
    hook = _hook(model_team, ["snapshot.failed", "export.failed"])
    spec = accepted_spec(images=1)
    ready = factories.make_snapshot(spec=spec, created_by=curator)
    long_ago = timezone.now() - timedelta(days=1)
    dead_build = snapshots.snapshot_create(spec=spec, name="Dead build", created_by=curator)
    Snapshot.objects.filter(pk=dead_build.pk).update(status="building", attempts=2, started_at=long_ago)
    dead_export = snapshots.export_create(snapshot=ready, format="coco", created_by=curator)
    Export.objects.filter(pk=dead_export.pk).update(status="running", attempts=2, started_at=long_ago)
    out = snapshots.builds_sweep(stale_after_seconds=60)
    assert (out.failed_snapshots, out.failed_exports) == ([dead_build.pk], [dead_export.pk])
    sent = {d.event: d.payload["data"] for d in _deliveries(hook)}
    assert set(sent) == {"snapshot.failed", "export.failed"}
    assert (sent["snapshot.failed"]["snapshot"]["id"], sent["export.failed"]["export"]["id"]) == (dead_build.pk,
                                                                                                dead_export.pk)
    assert "worker stopped" in sent["snapshot.failed"]["snapshot"]["error"]
    assert "worker stopped" in sent["export.failed"]["export"]["error"]


def test_the_failure_events_can_be_subscribed_through_the_api_and_are_in_the_schema(model_team):
    from drf_spectacular.generators import SchemaGenerator

    r = client_for(model_team).post("/api/v1/webhooks/", {"url": "https://ci.example/h",
                                                          "events": ["snapshot.failed", "export.failed"]},
                                    format="json")
    assert r.status_code == 201, r.content
    assert r.json()["events"] == ["export.failed", "snapshot.failed"]
    schema = json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str)
    assert '"snapshot.failed"' in schema and '"export.failed"' in schema


# ------------------------------------------------------------------------------ sight re-checked


def test_an_owner_who_lost_sight_of_the_object_meanwhile_is_not_sent_it(curator, receiver):
    hook = _hook(curator, ["batch.closed"], url=receiver.url)
    batch = factories.make_batch(images=1)
    labeling_services.batch_update(batch=batch, by=curator, status="closed")
    (pending,) = _deliveries(hook)
    # Now a model team member: they may still own webhooks, but batches are not theirs to see.
    _role(curator, roles.MODEL_TEAM)
    delivery = _deliver(pending)
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", 1, None)
    assert "may no longer see" in delivery.error
    assert not receiver.hits
    # a ping is about the webhook itself: still sent
    assert _deliver(webhooks.webhook_ping(webhook=hook)).status == "delivered"
    assert [json.loads(body)["event"] for _, _, body in receiver.hits] == ["ping"]


def test_an_object_gone_meanwhile_is_not_sent_and_a_redelivery_is_checked_again(model_team, curator, receiver):
    hook = _hook(model_team, ["export.ready"], url=receiver.url)
    snapshot = factories.make_snapshot(spec=accepted_spec(images=1), created_by=curator)
    export = snapshots.export_run(job=snapshots.export_create(snapshot=snapshot, format="coco", created_by=curator))
    (ready,) = _deliveries(hook)
    assert _deliver(ready).status == "delivered" and len(receiver.hits) == 1  # still seen: sent
    Export.objects.filter(pk=export.pk).delete()
    again = _deliver(webhooks.webhook_redeliver(delivery=ready))
    assert again.status == "failed" and "may no longer see" in again.error
    assert len(receiver.hits) == 1


def test_the_check_at_sending_uses_the_delivery_object_not_just_the_owners_role(model_team, curator, receiver):
    """Both owners may own webhooks; only the curator sees batches. Each delivery is checked
    for its own owner and object when sent."""
    teams = _hook(model_team, ["batch.closed"], url=receiver.url)
    curators = _hook(curator, ["batch.closed"], url=receiver.url)
    batch = factories.make_batch(images=1)
    labeling_services.batch_update(batch=batch, by=curator, status="closed")
    assert not _deliveries(teams)
    (pending,) = _deliveries(curators)
    # a delivery of the curator's payload recorded for the team's webhook (behind the services' back)
    forged = WebhookDelivery.objects.create(webhook=teams, event=pending.event, payload=pending.payload)
    assert _deliver(forged).status == "failed"
    assert _deliver(pending).status == "delivered"
    assert len(receiver.hits) == 1


# ------------------------------------------------------------------------------ a total deadline


class DrippingReceiver:
    """Takes one POST, then answers it one byte at a time, a pause between bytes well within the
    socket timeout: each read succeeds, the whole answer takes far longer than the deadline."""

    ANSWER = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"d" * 80 + b"\r\nContent-Length: 0\r\n\r\n"

    def __init__(self, pause: float = 0.2, tls=None):
        self.pause, self.tls = pause, tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self.requested, self.finished, self.stop = threading.Event(), threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.listener.accept()
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
        except OSError:  # closed before anyone came, or the handshake refused
            return
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            while len(body) < length:  # all of it: unread bytes at close would reset the connection
                chunk = conn.recv(65536)
                if not chunk:
                    return
                body += chunk
            self.requested.set()
            for byte in self.ANSWER:
                if self.pause and self.stop.wait(self.pause):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:  # the sender hung up
                    return
            self.finished.set()
            self.stop.wait(30)  # hold the connection open until the test is done with it

    def close(self):
        self.stop.set()
        self.thread.join(30)
        self.listener.close()


def test_a_receiver_dripping_its_answer_is_cut_off_at_the_deadline_and_tried_again(model_team, settings):
    settings.MATHSET_WEBHOOK_TIMEOUT_S = 1
    slow = DrippingReceiver()
    try:
        webhook = _hook(model_team, ["export.ready"], url=slow.url)
        delivery = WebhookDelivery.objects.create(webhook=webhook, event="ping", payload={"event": "ping"})
        outcome = webhooks.webhook_delivery_attempt(delivery_id=delivery.pk)
        # it returned while the receiver was still dripping
        finished_when_returned = slow.finished.is_set()
        assert slow.requested.is_set() and not finished_when_returned
        assert outcome.retry_in is not None
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts, delivery.response_code) == ("pending", 1, None)
        assert "deadline" in delivery.error and "MATHSET_WEBHOOK_TIMEOUT_S" in delivery.error
        assert f"127.0.0.1:{slow.url.split(':')[2].split('/')[0]}" in delivery.error
    finally:
        slow.close()


@pytest.mark.parametrize("pause", [0, 0.2])
def test_over_https_a_prompt_receiver_is_delivered_and_a_dripping_one_cut_off(model_team, settings, tmp_path,
                                                                             monkeypatch, pause):
    """TLS reads go through the SSL layer, not the plain socket: the deadline stops them too."""
    import ssl

    from tests.predict_server import self_signed

    name = "hooks.drip.test"
    cert, key = self_signed(tmp_path, name)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)  # trust the test certificate, as a private CA would be
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **kw: real(
        "127.0.0.1" if host == name else host, port, *a, **kw))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    settings.MATHSET_WEBHOOK_TIMEOUT_S = 1
    slow = DrippingReceiver(pause=pause, tls=context)
    try:
        url = slow.url.replace("http://127.0.0.1", f"https://{name}")
        webhook = _hook(model_team, ["export.ready"], url=url)
        delivery = WebhookDelivery.objects.create(webhook=webhook, event="ping", payload={"event": "ping"})
        outcome = webhooks.webhook_delivery_attempt(delivery_id=delivery.pk)
        finished_when_returned = slow.finished.is_set()
        delivery.refresh_from_db()
        assert slow.requested.is_set()
        if pause:
            assert not finished_when_returned and outcome.retry_in is not None
            assert delivery.status == "pending" and "deadline" in delivery.error and name in delivery.error
        else:
            assert (delivery.status, delivery.response_code) == ("delivered", 200), delivery.error
    finally:
        slow.close()


def test_a_receiver_that_takes_the_post_and_never_answers_fails_the_try_naming_the_deadline(model_team, settings):
    settings.MATHSET_WEBHOOK_TIMEOUT_S = 1
    with socket.create_server(("127.0.0.1", 0)) as listener:  # the kernel accepts; nobody answers
        port = listener.getsockname()[1]
        webhook = _hook(model_team, ["export.ready"], url=f"http://127.0.0.1:{port}/hook")
        delivery = WebhookDelivery.objects.create(webhook=webhook, event="ping", payload={"event": "ping"})
        outcome = webhooks.webhook_delivery_attempt(delivery_id=delivery.pk)
    assert outcome.retry_in is not None
    delivery.refresh_from_db()
    assert delivery.status == "pending" and "deadline" in delivery.error and f"127.0.0.1:{port}" in delivery.error


def test_every_event_has_a_sight_rule_for_the_check_at_sending():
    assert set(webhooks._sight_rules()) == set(Webhook.Event.values)
