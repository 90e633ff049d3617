"""A whole-try deadline for calls to external models (pipeline/endpoints.py, pipeline/runtime.py).

A socket timeout bounds each wait for bytes, not their sum: a model server that drips its answer
(its status line and headers, its body, or its TLS handshake) a byte at a time, each byte well
within the timeout, used to hold a pre-labeling worker until Celery's time limit. The model's
timeout is now the deadline of one call in all: past it the call fails with a ``requests.Timeout``
(an ``OSError``, which the pre-labeling task retries as any network error) naming the deadline and
the host. A prompt model server, over HTTP and HTTPS, is read as before.

Servers are real sockets on 127.0.0.1 in threads, as in the webhook tests. No assertion is timed:
"cut off" means the call returned before the server had finished dripping.
"""
from __future__ import annotations

import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from pipeline import runtime, services
from pipeline.models import PrelabelItem
from tests import factories
from tests.predict_server import PredictServer, self_signed

NAME = "ml.drip.test"
ONE_RESULT = json.dumps({"results": [{"regions": []}]}).encode() + b" " * 60  # trailing spaces: still JSON


def _head(body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + b"d" * 60
            + b"\r\nContent-Length: %d\r\n\r\n" % len(body))


class DrippingModel:
    """A model server (http.server, in a thread) that takes a POST, sends `at_once` and then
    `dripped` one byte at a time, `pause` seconds apart (well within any socket timeout here), and
    holds the connection open until closed. `requested` is set once a whole POST is in, `finished`
    once every byte went."""

    def __init__(self, *, at_once: bytes = b"", dripped: bytes = _head(ONE_RESULT) + ONE_RESULT,
                 tls: ssl.SSLContext | None = None, pause: float = 0.2):
        self.requested, self.finished, self.stop = threading.Event(), threading.Event(), threading.Event()
        model = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers["Content-Length"]))
                model.requested.set()
                model.drip(self.wfile, at_once, dripped, pause)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}/predict"

    def drip(self, out, at_once: bytes, dripped: bytes, pause: float) -> None:
        try:
            out.write(at_once)
            for byte in dripped:
                if self.stop.wait(pause):
                    return
                out.write(bytes([byte]))
        except OSError:  # the caller hung up
            return
        self.finished.set()
        self.stop.wait(30)  # hold the connection open until the test is done with it

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


class DrippingHandshake(DrippingModel):
    """A "TLS" server that takes the client's hello and drips back a handshake record one byte at a
    time: the client's TLS layer waits for the whole record, each byte well within its timeout."""

    def __init__(self, pause: float = 0.2):
        content = b"\x02" + b"\x00" * 59  # a ServerHello's type, then nothing sensible: never reached in time
        record = b"\x16\x03\x03" + len(content).to_bytes(2, "big") + content
        self.requested, self.finished, self.stop = threading.Event(), threading.Event(), threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, args=(record, pause), daemon=True)
        self.thread.start()

    def _serve(self, record: bytes, pause: float) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:  # closed before anyone came
            return
        with conn:
            if conn.recv(65536):  # the ClientHello
                self.requested.set()
                self.drip(conn.makefile("wb", buffering=0), b"", record, pause)

    def close(self):
        self.stop.set()
        self.thread.join(30)
        self.listener.close()


@pytest.fixture
def serve(request):
    """Start a dripping server (`kind`, with `kwargs`), closed after the test."""
    def start(kind=DrippingModel, **kwargs):
        server = kind(**kwargs)
        request.addfinalizer(server.close)
        return server

    return start


@pytest.fixture
def tls_name(tmp_path, monkeypatch):
    """A self-signed certificate for NAME, trusted (as a private CA would be), and NAME resolving to
    127.0.0.1: the server's TLS context."""
    cert, key = self_signed(tmp_path, NAME)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **kw: real(
        "127.0.0.1" if host == NAME else host, port, *a, **kw))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def _cut_off(server: DrippingModel, url: str, where: str) -> requests.Timeout:
    """Call the model at `url` with a 1-second timeout; it must fail naming the deadline and
    `where`, while `server` was still dripping."""
    with pytest.raises(requests.Timeout) as caught:
        runtime.HttpPredictor(url, timeout=1).read_urls(["http://x/1"])
    finished_when_returned = server.finished.is_set()
    assert server.requested.is_set() and not finished_when_returned
    message = str(caught.value)
    assert "deadline" in message and "1s" in message and where in message, message
    assert isinstance(caught.value, OSError)  # what the pre-labeling task retries
    return caught.value


# ------------------------------------------------------------------------------ cut off at the deadline


def test_a_model_server_dripping_its_headers_is_cut_off_at_the_deadline(serve):
    slow = serve()
    _cut_off(slow, slow.url(), f"127.0.0.1:{slow.port}")


def test_a_model_server_dripping_its_body_after_prompt_headers_is_cut_off_at_the_deadline(serve):
    """The model's answer is read whole (it is parsed), so its body is inside the deadline too."""
    slow = serve(at_once=_head(ONE_RESULT), dripped=ONE_RESULT)
    _cut_off(slow, slow.url(), f"127.0.0.1:{slow.port}")


def test_over_https_a_model_server_dripping_its_answer_is_cut_off_at_the_deadline(serve, tls_name):
    """TLS reads go through the SSL layer, not the plain socket: the deadline stops them too."""
    slow = serve(tls=tls_name)
    _cut_off(slow, slow.url(NAME, "https"), f"{NAME}:{slow.port}")


def test_a_server_dripping_its_tls_handshake_is_cut_off_at_the_deadline(serve):
    """The handshake happens while connecting, before the connection has its TLS socket: the
    deadline covers it as well."""
    slow = serve(DrippingHandshake)
    _cut_off(slow, slow.url(scheme="https"), f"127.0.0.1:{slow.port}")


def test_a_dripping_model_fails_the_chunks_try_and_leaves_its_items_pending(serve, curator, spec, source,
                                                                          django_capture_on_commit_callbacks,
                                                                          monkeypatch):
    """Pre-labeling: the deadline's error escapes the chunk (the task retries it, as any network
    error); no item is failed or done by it."""
    slow = serve()
    images = [factories.make_image(spec=spec, source=source, data=factories.png_bytes(40, 30)) for _ in range(2)]
    services.model_version_register_http(name="drip", version="1", endpoint_url=slow.url(), activate=True)
    with django_capture_on_commit_callbacks(execute=False):  # the chunk is run here, not queued
        job = services.prelabel_job_create(created_by=curator, spec=spec)
    # the worker's cached reader for that version, with a short timeout (the default is a minute)
    monkeypatch.setattr(runtime, "reader_for", lambda *versions: runtime.HttpPredictor(slow.url(), timeout=1))

    with pytest.raises(requests.Timeout) as caught:
        services.prelabel_chunk_run(job_id=job.pk, image_ids=[i.pk for i in images])

    finished_when_returned = slow.finished.is_set()
    assert slow.requested.is_set() and not finished_when_returned
    assert "deadline" in str(caught.value) and isinstance(caught.value, OSError)
    items = PrelabelItem.objects.filter(job=job)
    assert sorted(items.values_list("status", "attempts")) == [(PrelabelItem.Status.PENDING, 1)] * 2


# ------------------------------------------------------------------------------ a prompt model still works


def test_a_prompt_model_server_answers_over_http():
    model = PredictServer("127.0.0.1")
    try:
        out = runtime.HttpPredictor(f"http://127.0.0.1:{model.port}/predict", timeout=5).read_urls(
            ["http://x/1", "http://x/2"])
    finally:
        model.close()
    assert out == [{"regions": []}, {"regions": []}]
    assert model.hits == [("/predict", f"127.0.0.1:{model.port}")]


def test_a_prompt_model_server_answers_over_https(tls_name):
    model = PredictServer("127.0.0.1", tls=tls_name)
    try:
        out = runtime.HttpPredictor(f"https://{NAME}:{model.port}/predict", timeout=5).read_urls(["http://x/1"])
    finally:
        model.close()
    assert out == [{"regions": []}]
    assert model.hits == [("/predict", f"{NAME}:{model.port}")]


def test_a_prompt_model_server_dripping_nothing_is_read_whole_over_https(serve, tls_name):
    """The same dripping server with no pause: the answer is read in full, nothing cut short."""
    prompt = serve(tls=tls_name, pause=0)
    out = runtime.HttpPredictor(prompt.url(NAME, "https"), timeout=5).read_urls(["http://x/1"])
    assert out == [{"regions": []}] and prompt.finished.is_set()


def test_a_refused_connection_is_still_a_connection_error_naming_the_host():
    """Within the deadline, a network error keeps its own type and message."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(requests.ConnectionError) as caught:
        runtime.HttpPredictor(f"http://127.0.0.1:{port}/predict", timeout=5).read_urls(["http://x/1"])
    assert not isinstance(caught.value, requests.Timeout)
    assert f"127.0.0.1:{port}" in str(caught.value) and "deadline" not in str(caught.value)
