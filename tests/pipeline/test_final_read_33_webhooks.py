"""Final read of the whole-try deadline (pipeline/endpoints.py) and the webhook failure events:
what an external model may answer, and the gaps found reading both as an attacker.

- An external model's answer is read into memory: at most `MATHSET_MODEL_MAX_RESPONSE_BYTES`
  (as its Content-Length declares, or as read, decoded), past which the call fails with an
  ``ExternalModelError`` naming the cap and the setting. A deterministic answer too large is a
  broken answer, not a network error: pre-labeling fails the request's items with the reason (no
  retry: the same model would answer the same), an evaluation fails the run.
- `MATHSET_MODEL_TIMEOUT_S` is the deadline of one model call (60 s by default), named in its error.
- requests reads the whole body of a redirect (a 3xx with a Location) to release its connection,
  even with ``stream`` and ``allow_redirects=False``: a receiver or model answering one with an
  endless body filled the worker's memory until the deadline (and for a model, past the cap).
- One address whose packets are dropped (an unreachable IPv6 route, a host down) used all of the
  deadline, leaving the next address, which answers, no time: each address now has a share of what
  is left, and the connected one all that is left for the rest of the call.
- A resolver that never answers held the call past its deadline: resolving now counts against it.

Servers are real sockets on 127.0.0.1 in threads, as in test_endpoint_deadline.py. No assertion is
timed: "cut off" means the call returned before the server had sent everything it meant to.
"""
from __future__ import annotations

import gzip
import ipaddress
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from pipeline import endpoints, evaluation, runtime, services, webhooks
from pipeline.models import PrelabelItem, WebhookDelivery
from tests import factories
from tests.pipeline.test_endpoint_deadline import DrippingModel
from tests.pipeline.test_evaluation_service import three_image_snapshot
from tests.predict_server import PredictServer

CAP = 1024 * 1024  # the cap the tests set: far above a real answer here, far below a flood
FLOOD = 32 * CAP  # what a flooding server sends at most (then it holds the connection open)
ANSWER = json.dumps({"results": [{"regions": []}]}).encode()
SETTING = "MATHSET_MODEL_MAX_RESPONSE_BYTES"

pytestmark = pytest.mark.django_db


def _chunked(chunks):
    for chunk in chunks:
        yield b"%x\r\n" % len(chunk) + chunk + b"\r\n"  # never the last (empty) chunk: it never ends


def _spaces(total: int = FLOOD, size: int = 64 * 1024):
    for _ in range(total // size):
        yield b" " * size  # whitespace: JSON may hold any amount of it


class Flood:
    """A model or webhook receiver (http.server, in a thread) answering each POST with `head` and
    then the chunks of `body()` as fast as they are read; after the last it holds the connection
    open until closed. `requested` is set once a POST is in, `finished` once every chunk went out."""

    def __init__(self, head: bytes, body=lambda: ()):
        self.requested, self.finished, self.stop = threading.Event(), threading.Event(), threading.Event()
        flood = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers["Content-Length"]))
                flood.requested.set()
                try:
                    self.wfile.write(head)
                    for chunk in body():
                        if flood.stop.is_set():
                            return
                        self.wfile.write(chunk)
                except OSError:  # the caller hung up
                    return
                flood.finished.set()
                flood.stop.wait(30)  # hold the connection open until the test is done with it

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/predict"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def _head(status: str = "200 OK", **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Content-Type: application/json",
             *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.fixture
def flood(request):
    def start(head: bytes, body=lambda: ()) -> Flood:
        server = Flood(head, body)
        request.addfinalizer(server.close)
        return server

    return start


@pytest.fixture
def capped(settings):
    settings.MATHSET_MODEL_MAX_RESPONSE_BYTES = CAP
    runtime.clear_cache()
    yield
    runtime.clear_cache()


def _refused(server: Flood, *, timeout: float = 10, flooding: bool = True) -> runtime.ExternalModelError:
    """Call the model at `server`; it must fail for its size, naming the cap and the setting (and,
    if `flooding`, while `server` had more to send)."""
    with pytest.raises(runtime.ExternalModelError) as caught:
        runtime.HttpPredictor(server.url, timeout=timeout).read_urls(["http://x/1"])
    finished_when_returned = server.finished.is_set()
    assert server.requested.is_set() and not (flooding and finished_when_returned)
    message = str(caught.value)
    assert f"{CAP} bytes" in message and SETTING in message and f"127.0.0.1:{server.port}" in message, message
    assert not isinstance(caught.value, OSError)  # not what the pre-labeling task retries
    return caught.value


# ------------------------------------------------------------------------------ A: the size of an answer


def test_an_endless_chunked_answer_is_cut_off_at_the_cap(flood, capped):
    _refused(flood(_head(Transfer_Encoding="chunked"), lambda: _chunked(_spaces())))


def test_an_endless_answer_without_a_length_is_cut_off_at_the_cap(flood, capped):
    """Delimited by the connection's close, which never comes."""
    _refused(flood(_head(Connection="close"), _spaces))


def test_an_answer_declaring_more_than_the_cap_is_refused_before_its_body_is_read(flood, capped):
    """The server sends its headers and then nothing: reading the body would wait for the deadline."""
    error = _refused(flood(_head(Content_Length=str(10**12))), timeout=20, flooding=False)
    assert str(10**12) in str(error)


def test_a_compressed_answer_is_capped_as_decoded(flood, capped):
    """A few kilobytes of gzip that inflate to 32 MiB: its Content-Length is small, its content not."""
    bomb = gzip.compress(b" " * FLOOD)
    assert len(bomb) < CAP
    _refused(flood(_head(Content_Encoding="gzip", Content_Length=str(len(bomb))), lambda: [bomb]), flooding=False)


def test_a_redirect_with_an_endless_body_is_not_read_past_the_cap(flood, capped):
    """requests reads a redirect's whole body to release the connection, redirects followed or not."""
    _refused(flood(_head("302 Found", Location="http://127.0.0.1:9/elsewhere", Transfer_Encoding="chunked"),
                   lambda: _chunked(_spaces())))


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_an_answer_of_exactly_the_cap_is_read_and_one_byte_more_is_refused(flood, settings, framing):
    def serve(body: bytes) -> Flood:
        if framing == "length":
            return flood(_head(Content_Length=str(len(body))), lambda: [body])
        return flood(_head(Transfer_Encoding="chunked"), lambda: [*_chunked([body]), b"0\r\n\r\n"])

    settings.MATHSET_MODEL_MAX_RESPONSE_BYTES = len(ANSWER)
    assert runtime.HttpPredictor(serve(ANSWER).url, timeout=10).read_urls(["http://x/1"]) == [{"regions": []}]
    with pytest.raises(runtime.ExternalModelError, match=f"{len(ANSWER)} bytes"):
        runtime.HttpPredictor(serve(ANSWER + b" ").url, timeout=10).read_urls(["http://x/1"])


def test_an_answer_too_large_fails_the_chunks_items_with_the_reason_and_is_not_retried(
        flood, capped, curator, spec, source, django_capture_on_commit_callbacks):
    big = flood(_head(Transfer_Encoding="chunked"), lambda: _chunked(_spaces()))
    images = [factories.make_image(spec=spec, source=source, data=factories.png_bytes(40, 30)) for _ in range(2)]
    services.model_version_register_http(name="flood", version="1", endpoint_url=big.url, activate=True)
    with django_capture_on_commit_callbacks(execute=False):  # the chunk is run here, not queued
        job = services.prelabel_job_create(created_by=curator, spec=spec)

    counts = services.prelabel_chunk_run(job_id=job.pk, image_ids=[i.pk for i in images])  # nothing escapes

    assert counts["failed"] == 2
    items = list(PrelabelItem.objects.filter(job=job))
    assert {i.status for i in items} == {PrelabelItem.Status.FAILED}
    assert all(SETTING in i.error and f"{CAP} bytes" in i.error for i in items), items[0].error


def test_an_answer_too_large_fails_an_evaluation_with_the_reason(flood, capped):
    big = flood(_head(Transfer_Encoding="chunked"), lambda: _chunked(_spaces()))
    version = services.model_version_register_http(name="flood", version="1", endpoint_url=big.url)
    run = evaluation.evaluation_run(run=evaluation.evaluation_create(
        snapshot=three_image_snapshot(), detector_version=version, recognizer_version=None, created_by=None,
        batch_size=1))
    assert run.status == "failed"
    assert "ExternalModelError" in run.error and SETTING in run.error, run.error


# ------------------------------------------------------------------------------ B: the model's deadline


def test_the_model_timeout_setting_is_the_deadline_of_a_call_and_is_named(settings):
    settings.MATHSET_MODEL_TIMEOUT_S = 1
    runtime.clear_cache()
    slow = DrippingModel()
    try:
        version = services.model_version_register_http(name="drip", version="1", endpoint_url=slow.url())
        with pytest.raises(requests.Timeout) as caught:
            runtime.reader_for(version).read_urls(["http://x/1"])
        finished_when_returned = slow.finished.is_set()
    finally:
        slow.close()
        runtime.clear_cache()
    assert slow.requested.is_set() and not finished_when_returned
    message = str(caught.value)
    assert "deadline" in message and "1s" in message and "MATHSET_MODEL_TIMEOUT_S" in message, message


def test_the_model_settings_have_their_documented_defaults():
    from config import settings as project

    assert project.MATHSET_MODEL_TIMEOUT_S == 60
    assert project.MATHSET_MODEL_MAX_RESPONSE_BYTES == 64 * 1024 * 1024


# ------------------------------------------------------------------------------ webhooks: a redirect's body


def test_a_webhook_receiver_answering_a_redirect_with_an_endless_body_is_not_read(flood, model_team, settings):
    """The receiver's body is never read: a 3xx is a final answer at once, its body left unread."""
    settings.MATHSET_WEBHOOK_HOSTS, settings.MATHSET_WEBHOOK_TIMEOUT_S = "*", 5
    receiver = flood(_head("302 Found", Location="http://127.0.0.1:9/elsewhere", Transfer_Encoding="chunked"),
                     lambda: _chunked(_spaces()))
    webhook = webhooks.webhook_create(owner=model_team, url=receiver.url, events=["export.ready"]).webhook
    delivery = WebhookDelivery.objects.create(webhook=webhook, event="ping", payload={"event": "ping"})

    webhooks.webhook_delivery_attempt(delivery_id=delivery.pk)

    finished_when_returned = receiver.finished.is_set()
    assert receiver.requested.is_set() and not finished_when_returned
    delivery.refresh_from_db()
    assert (delivery.status, delivery.response_code) == ("failed", 302), delivery.error


# ------------------------------------------------------------------------------ the deadline over many addresses


NAME = "ml.two-addresses.test"


def test_an_address_that_never_answers_leaves_the_next_one_time_within_the_deadline(monkeypatch):
    """127.0.0.2 drops every packet (it waits out any connect timeout); 127.0.0.1 answers at once."""
    live = PredictServer("127.0.0.1")
    monkeypatch.setattr(endpoints, "resolve", lambda host, port: [ipaddress.ip_address("127.0.0.2"),
                                                                  ipaddress.ip_address("127.0.0.1")])
    real, tried = endpoints._connect, []

    def connect(ip, port, timeout, *args):
        tried.append(str(ip))
        if str(ip) == "127.0.0.2":
            threading.Event().wait(timeout)  # no answer, as long as the caller is willing to wait
            raise TimeoutError("timed out")
        return real(ip, port, timeout, *args)

    monkeypatch.setattr(endpoints, "_connect", connect)
    try:
        out = runtime.HttpPredictor(f"http://{NAME}:{live.port}/predict", timeout=4).read_urls(["http://x/1"])
    finally:
        live.close()
    assert out == [{"regions": []}]
    assert tried == ["127.0.0.2", "127.0.0.1"] and live.hosts == [f"{NAME}:{live.port}"]


def test_a_resolver_that_never_answers_is_cut_off_at_the_deadline(monkeypatch):
    released, answered = threading.Event(), threading.Event()
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host != NAME:
            return real(host, *args, **kwargs)
        released.wait(20)  # the resolver's own give-up, far past the deadline
        answered.set()
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    try:
        with pytest.raises(requests.Timeout) as caught:
            endpoints.post(f"http://{NAME}/predict", json={"images": []},
                           timeout=endpoints.Deadline(1, setting="MATHSET_MODEL_TIMEOUT_S"))
        answered_when_returned = answered.is_set()
    finally:
        released.set()
    assert not answered_when_returned
    message = str(caught.value)
    assert NAME in message and "deadline" in message and "MATHSET_MODEL_TIMEOUT_S" in message, message


# ------------------------------------------------------------------------------ no watch outlives its call


def test_every_calls_watch_is_stopped_whatever_became_of_the_call(monkeypatch, flood, settings):
    watches = []

    class Recorded(endpoints._Watch):
        def __init__(self, seconds):
            super().__init__(seconds)
            watches.append(self)

    monkeypatch.setattr(endpoints, "_Watch", Recorded)
    settings.MATHSET_MODEL_MAX_RESPONSE_BYTES = CAP
    prompt = PredictServer("127.0.0.1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]  # nothing listens there once closed
    big = flood(_head(Transfer_Encoding="chunked"), lambda: _chunked(_spaces()))
    slow = DrippingModel()
    try:
        calls = [(f"http://127.0.0.1:{prompt.port}/predict", None),  # answered
                 (f"http://127.0.0.1:{closed_port}/predict", requests.ConnectionError),  # refused
                 ("http://169.254.169.254/predict", runtime.ExternalModelError),  # not called
                 (big.url, runtime.ExternalModelError),  # too large
                 (slow.url(), requests.Timeout)]  # past the deadline
        for url, error in calls:
            if error is None:
                runtime.HttpPredictor(url, timeout=5).read_urls(["http://x/1"])
            else:
                with pytest.raises(error):
                    runtime.HttpPredictor(url, timeout=1 if error is requests.Timeout else 5).read_urls(["http://x/1"])
    finally:
        prompt.close()
        slow.close()
    assert len(watches) == len(calls)
    assert all(w._timer.finished.is_set() and w._stopped for w in watches)  # cancelled (or fired), and stopped


# ------------------------------------------------------------------------------ one failure event per failure


@pytest.mark.django_db(transaction=True)
def test_a_build_the_sweep_gave_up_on_whose_late_worker_then_fails_sends_one_snapshot_failed(model_team, curator,
                                                                                             monkeypatch, settings):
    """PostgreSQL, two connections: the worker's attempt is still in `_freeze` when the sweep fails it
    (and announces it); the worker then fails too, and its conditional update finds the attempt no
    longer its own: nothing more is recorded, nothing sent twice."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("two workers' connections: PostgreSQL")
    from curation import snapshots
    from curation import tasks as curation_tasks
    from curation.models import Snapshot
    from tests.curation.test_snapshots import accepted_spec
    from tests.pg_threads import start_thread

    settings.MATHSET_WEBHOOK_HOSTS = "*"
    hook = webhooks.webhook_create(owner=model_team, url="http://127.0.0.1:9/hook", events=["snapshot.failed"]).webhook
    monkeypatch.setattr(curation_tasks.build_snapshot, "delay", lambda *a: None)  # each "worker" is called here
    monkeypatch.setattr(webhooks, "_enqueue", lambda deliveries: None)  # recorded, not sent
    spec = accepted_spec(images=1)
    snapshot = snapshots.snapshot_create(spec=spec, name="Raced", created_by=curator)
    entered, release = threading.Event(), threading.Event()

    def freeze(snapshot):
        entered.set()
        release.wait(30)
        raise OSError("the late worker fails as well")

    monkeypatch.setattr(snapshots, "_freeze", freeze)
    results = [None]
    worker = start_thread(lambda: snapshots.snapshot_build(snapshot=Snapshot.objects.get(pk=snapshot.pk)), results, 0)
    try:
        assert entered.wait(30)
        out = snapshots.builds_sweep(stale_after_seconds=0, max_attempts=1)  # its one attempt used: failed
    finally:
        release.set()
        worker.join(30)
    assert out.failed_snapshots == [snapshot.pk]
    snapshot.refresh_from_db()
    assert snapshot.status == "failed" and "worker stopped" in snapshot.error  # the sweep's, not overwritten
    sent = [d.payload["data"]["snapshot"]["error"] for d in WebhookDelivery.objects.filter(webhook=hook)]
    assert len(sent) == 1 and "worker stopped" in sent[0]
