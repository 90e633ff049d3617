"""DNS rebinding (pipeline/endpoints.py): a model's name is checked by what it resolves to, and
the call must then connect to that very address. A DNS answer that changes between the check
and the connect must never be reached, even though the name stays in the URL, the Host header
and, for https, the SNI name and the certificate check.

The "DNS" is socket.getaddrinfo answering a sequence for one test name: the allowed address
first (the check), something else afterwards (what a client resolving again would get).
Servers run on 127.0.0.1 (allowed) and 127.0.0.2 (an "internal" one, not among the model hosts)."""
from __future__ import annotations

import socket
import ssl

import pytest
import requests

from pipeline import endpoints, runtime
from tests.predict_server import PredictServer, self_signed

NAME = "ml.rebind.test"


def _pair(tls: ssl.SSLContext | None = None) -> tuple[PredictServer, PredictServer]:
    """The model on 127.0.0.1 and an internal server on 127.0.0.2, on the same port."""
    for _ in range(20):
        model = PredictServer("127.0.0.1", tls=tls)
        try:
            return model, PredictServer("127.0.0.2", model.port, tls=tls)
        except OSError:  # that port is taken on 127.0.0.2: another one
            model.close()
    pytest.skip("no port free on both 127.0.0.1 and 127.0.0.2")


@pytest.fixture
def dns(monkeypatch):
    """NAME resolves to answers[0] the first time, then to answers[1] ever after; other names as usual."""
    answers: list[str] = []
    asked: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host != NAME:
            return real(host, port, *args, **kwargs)
        address = answers[min(len(asked), len(answers) - 1)]
        asked.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


@pytest.fixture
def servers():
    model, internal = _pair()
    yield model, internal
    model.close()
    internal.close()


def test_an_answer_changed_after_the_check_is_never_connected_to(dns, servers, settings):
    model, internal = servers
    settings.MATHSET_MODEL_HOSTS = "127.0.0.1"  # the model's address; 127.0.0.2 is the workers' own network
    dns[:] = ["127.0.0.1", "127.0.0.2"]

    out = runtime.HttpPredictor(f"http://{NAME}:{model.port}/predict").read_urls(["http://x/1"])

    assert out == [{"regions": []}]
    assert internal.hits == []
    # the model got the call, addressed to its name
    assert model.hits == [("/predict", f"{NAME}:{model.port}")]


def test_an_answer_changed_to_the_metadata_address_is_never_connected_to(dns, servers, settings):
    model, _ = servers
    settings.MATHSET_MODEL_HOSTS = "*"
    dns[:] = ["127.0.0.1", "169.254.169.254"]

    resp = endpoints.post(f"http://{NAME}:{model.port}/predict", json={"images": ["http://x/1"]}, timeout=5)

    assert resp.status_code == 200 and model.hits == [("/predict", f"{NAME}:{model.port}")]


def test_a_forbidden_answer_at_the_check_is_still_refused(dns, servers, settings):
    model, internal = servers
    settings.MATHSET_MODEL_HOSTS = "127.0.0.1"
    dns[:] = ["127.0.0.2"]
    with pytest.raises(runtime.ExternalModelError, match="not among the model hosts"):
        runtime.HttpPredictor(f"http://{NAME}:{model.port}/predict").read_urls(["http://x/1"])
    assert model.hits == internal.hits == []


# ------------------------------------------------------------------ https

def _tls_pair(cert: str, key: str) -> tuple[PredictServer, PredictServer, list[str]]:
    names: list[str] = []  # the SNI names the servers were asked for
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    model, internal = _pair(tls=context)
    return model, internal, names


def test_https_is_pinned_too_with_sni_and_the_certificate_checked_on_the_name(dns, settings, tmp_path, monkeypatch):
    cert, key = self_signed(tmp_path, NAME)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)  # trust the test certificate, as a private CA would be
    settings.MATHSET_MODEL_HOSTS = "127.0.0.1"
    dns[:] = ["127.0.0.1", "127.0.0.2"]
    model, internal, names = _tls_pair(cert, key)
    try:
        out = runtime.HttpPredictor(f"https://{NAME}:{model.port}/predict").read_urls(["http://x/1"])
    finally:
        model.close()
        internal.close()
    assert out == [{"regions": []}]
    assert internal.hits == [] and model.hits == [("/predict", f"{NAME}:{model.port}")]
    assert names == [NAME]


def test_https_still_refuses_a_certificate_for_another_name(dns, settings, tmp_path, monkeypatch):
    """Connecting to the address must not switch hostname verification off."""
    cert, key = self_signed(tmp_path, "someone-else.test")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
    settings.MATHSET_MODEL_HOSTS = "127.0.0.1"
    dns[:] = ["127.0.0.1"]
    model, internal, _ = _tls_pair(cert, key)
    try:
        with pytest.raises(requests.exceptions.SSLError):
            endpoints.post(f"https://{NAME}:{model.port}/predict", json={"images": []}, timeout=5)
    finally:
        model.close()
        internal.close()
    assert model.hits == []
