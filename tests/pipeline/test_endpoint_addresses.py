"""A model's name with several addresses (pipeline/endpoints.py): like socket.create_connection,
a call tries each address that passed the check, in the order the resolver gave them, with the
connect timeout for each, and fails only when every one fails; an address never checked is
never tried. A failure names the host (and port) the model team registered, not the address,
which may follow in parentheses.

The "DNS" is socket.getaddrinfo answering a list of addresses for one test name; servers listen
on 127.0.0.1, 127.0.0.2 and ::1, and the same port with nothing listening is a dead address."""
from __future__ import annotations

import re
import socket
import ssl

import pytest
import requests

from pipeline import endpoints, runtime
from tests.predict_server import PredictServer, self_signed

NAME = "ml.addresses.test"


@pytest.fixture
def serve():
    """Start servers (`serve(address, port=0, ...)`); all closed after the test."""
    started: list[PredictServer] = []

    def start(address: str, port: int = 0, **kwargs) -> PredictServer:
        try:
            server = PredictServer(address, port, **kwargs)
        except OSError as exc:  # that port is taken there, or no IPv6 here
            pytest.skip(f"cannot listen on {address}:{port}: {exc}")
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def dns(monkeypatch):
    """NAME resolves to answers[0] (a list of addresses, in order) the first time, answers[1] the
    second and so on, the last one ever after; other names as usual."""
    answers: list[list[str]] = []
    asked: list[int] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host != NAME:
            return real(host, port, *args, **kwargs)
        answer = answers[min(len(asked), len(answers) - 1)]
        asked.append(1)
        return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port, 0, 0)) if ":" in a
                else (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port)) for a in answer]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


class Connects:
    """Every (address, connect timeout) a socket was connected to, in order; an address put in
    `black_holes` times out instead, as a host that drops the SYN would."""

    def __init__(self):
        self.seen: list[tuple[str, float | None]] = []
        self.black_holes: set[str] = set()


@pytest.fixture
def connects(monkeypatch):
    spy = Connects()
    real = socket.socket.connect

    def connect(self, address):
        spy.seen.append((address[0], self.gettimeout()))
        if address[0] in spy.black_holes:
            raise TimeoutError("timed out")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return spy


def _free_port_on(address: str) -> int:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def _post(url: str, timeout: float = 5) -> requests.Response:
    return endpoints.post(url, json={"images": ["http://x/1"]}, timeout=timeout)


# ------------------------------------------------------------------ every checked address, in order

def test_a_dead_first_address_falls_through_to_the_next(dns, serve, connects, settings):
    settings.MATHSET_MODEL_HOSTS = NAME
    live = serve("127.0.0.2")  # nothing listens on 127.0.0.1 at that port
    dns[:] = [["127.0.0.1", "127.0.0.2"]]

    resp = _post(f"http://{NAME}:{live.port}/predict")

    assert resp.status_code == 200 and live.hosts == [f"{NAME}:{live.port}"]
    assert [a for a, _ in connects.seen] == ["127.0.0.1", "127.0.0.2"]


def test_addresses_are_tried_in_the_order_resolved(dns, serve, connects, settings):
    settings.MATHSET_MODEL_HOSTS = NAME
    second = serve("127.0.0.2")
    first = serve("127.0.0.1", second.port)
    dns[:] = [["127.0.0.2", "127.0.0.1"]]

    out = runtime.HttpPredictor(f"http://{NAME}:{second.port}/predict").read_urls(["http://x/1"])

    assert out == [{"regions": []}]
    assert second.hosts == [f"{NAME}:{second.port}"] and first.hosts == []
    assert [a for a, _ in connects.seen] == ["127.0.0.2"]


def test_an_unreachable_ipv6_address_falls_through_to_ipv4(dns, serve, connects, settings):
    settings.MATHSET_MODEL_HOSTS = NAME
    live = serve("127.0.0.1")
    dns[:] = [["::1", "127.0.0.1"]]  # IPv6 first, as resolvers order them; nothing listens on [::1]

    assert _post(f"http://{NAME}:{live.port}/predict").status_code == 200

    assert live.hosts == [f"{NAME}:{live.port}"]
    assert [a for a, _ in connects.seen] == ["::1", "127.0.0.1"]


def test_ipv6_is_used_when_it_comes_first_and_answers(dns, serve, connects, settings):
    settings.MATHSET_MODEL_HOSTS = NAME
    live = serve("::1")
    dns[:] = [["::1", "127.0.0.1"]]

    assert _post(f"http://{NAME}:{live.port}/predict").status_code == 200

    assert live.hosts == [f"{NAME}:{live.port}"]
    assert [a for a, _ in connects.seen] == ["::1"]


def test_the_connect_timeout_applies_to_each_address(dns, serve, connects, settings):
    settings.MATHSET_MODEL_HOSTS = NAME
    live = serve("127.0.0.2")
    dns[:] = [["127.0.0.1", "127.0.0.2"]]
    connects.black_holes.add("127.0.0.1")

    resp = endpoints.post(f"http://{NAME}:{live.port}/predict", json={"images": []}, timeout=3)

    assert resp.status_code == 200 and live.hosts == [f"{NAME}:{live.port}"]
    assert connects.seen == [("127.0.0.1", 3), ("127.0.0.2", 3)]


def test_an_address_never_checked_is_never_tried(dns, serve, connects, settings):
    """Every checked address dead, and the name now pointing elsewhere: the call fails rather than
    resolve again (or fall back to the new answer)."""
    settings.MATHSET_MODEL_HOSTS = "127.0.0.0/30"  # 127.0.0.4 is the workers' own network
    internal = serve("127.0.0.4")
    dns[:] = [["127.0.0.1", "127.0.0.2"], ["127.0.0.4"]]

    with pytest.raises(requests.ConnectionError):
        _post(f"http://{NAME}:{internal.port}/predict")

    assert internal.hosts == []
    assert [a for a, _ in connects.seen] == ["127.0.0.1", "127.0.0.2"]


def test_a_forbidden_address_among_several_refuses_the_call(dns, serve, connects, settings):
    settings.MATHSET_MODEL_HOSTS = "*"
    live = serve("127.0.0.1")
    dns[:] = [["127.0.0.1", "169.254.169.254"]]
    with pytest.raises(endpoints.EndpointRefused, match="169.254.169.254"):
        _post(f"http://{NAME}:{live.port}/predict")
    assert connects.seen == [] and live.hosts == []


def test_user_info_in_the_url_is_sent_as_basic_auth_not_in_the_host_header(dns, serve, monkeypatch, settings):
    settings.MATHSET_MODEL_HOSTS = NAME
    live = serve("127.0.0.1")
    dns[:] = [["127.0.0.1"]]
    sent = []
    real = requests.Session.send
    monkeypatch.setattr(requests.Session, "send", lambda self, req, **kw: sent.append(req.headers) or real(self, req, **kw))

    assert _post(f"http://team:secret@{NAME}:{live.port}/predict").status_code == 200

    assert live.hosts == [f"{NAME}:{live.port}"]
    assert sent[0]["Authorization"] == "Basic dGVhbTpzZWNyZXQ="


# ------------------------------------------------------------------ errors name the registered host

def _names_the_host(message: str, port: int, *addresses: str) -> None:
    assert f"{NAME}:{port}" in message, message
    for address in addresses:  # the addresses tried, if named, in parentheses
        assert re.search(rf"\([^()]*(?<![\w:.]){re.escape(address)}(?![\w:.])[^()]*\)", message), message
    # not the pool's own wording, which names the address it was handed
    assert "host='127." not in message and "host='::" not in message, message


def test_a_refused_connection_names_the_host_and_port(dns, settings):
    settings.MATHSET_MODEL_HOSTS = NAME
    port = _free_port_on("127.0.0.1")
    dns[:] = [["127.0.0.1"]]

    with pytest.raises(requests.ConnectionError) as caught:
        runtime.HttpPredictor(f"http://{NAME}:{port}/predict").read_urls(["http://x/1"])

    _names_the_host(str(caught.value), port, "127.0.0.1")
    assert "refused" in str(caught.value)
    assert isinstance(caught.value, OSError)  # still what the Celery task retries


def test_every_address_tried_is_named_when_all_fail(dns, settings):
    settings.MATHSET_MODEL_HOSTS = NAME
    port = _free_port_on("127.0.0.1")
    dns[:] = [["::1", "127.0.0.1"]]

    with pytest.raises(requests.ConnectionError) as caught:
        _post(f"http://{NAME}:{port}/predict")

    _names_the_host(str(caught.value), port, "::1", "127.0.0.1")


def test_a_literal_address_is_named_as_registered(settings):
    settings.MATHSET_MODEL_HOSTS = "*"
    port = _free_port_on("::1")
    with pytest.raises(requests.ConnectionError) as caught:
        _post(f"http://[::1]:{port}/predict")
    assert f"[::1]:{port}" in str(caught.value), str(caught.value)


def test_a_connect_timeout_names_the_host(dns, connects, settings):
    settings.MATHSET_MODEL_HOSTS = NAME
    dns[:] = [["127.0.0.1", "127.0.0.2"]]
    connects.black_holes.update({"127.0.0.1", "127.0.0.2"})

    with pytest.raises(requests.ConnectTimeout) as caught:
        _post(f"http://{NAME}:8080/predict", timeout=2)

    _names_the_host(str(caught.value), 8080, "127.0.0.1", "127.0.0.2")
    assert "timed out" in str(caught.value)


def test_a_read_timeout_names_the_host(dns, serve, settings):
    settings.MATHSET_MODEL_HOSTS = NAME
    slow = serve("127.0.0.1", delay=1.5)
    dns[:] = [["127.0.0.1"]]

    with pytest.raises(requests.ReadTimeout) as caught:
        _post(f"http://{NAME}:{slow.port}/predict", timeout=0.3)

    _names_the_host(str(caught.value), slow.port, "127.0.0.1")


def _tls(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def test_https_falls_through_to_the_next_address_with_the_name_still_verified(dns, serve, connects, settings,
                                                                              tmp_path, monkeypatch):
    cert, key = self_signed(tmp_path, NAME)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
    settings.MATHSET_MODEL_HOSTS = NAME
    live = serve("127.0.0.2", tls=_tls(cert, key))
    dns[:] = [["127.0.0.1", "127.0.0.2"]]

    assert _post(f"https://{NAME}:{live.port}/predict").status_code == 200
    assert live.hosts == [f"{NAME}:{live.port}"]
    assert [a for a, _ in connects.seen] == ["127.0.0.1", "127.0.0.2"]


def test_a_certificate_for_another_name_is_an_error_naming_the_host(dns, serve, settings, tmp_path, monkeypatch):
    cert, key = self_signed(tmp_path, "someone-else.test")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
    settings.MATHSET_MODEL_HOSTS = NAME
    server = serve("127.0.0.1", tls=_tls(cert, key))
    dns[:] = [["127.0.0.1"]]

    with pytest.raises(requests.exceptions.SSLError) as caught:
        _post(f"https://{NAME}:{server.port}/predict")

    _names_the_host(str(caught.value), server.port, "127.0.0.1")
    assert "certificate" in str(caught.value) and server.hosts == []


def test_https_to_a_plain_http_server_is_an_error_naming_the_host(dns, serve, settings):
    settings.MATHSET_MODEL_HOSTS = NAME
    server = serve("127.0.0.1")
    dns[:] = [["127.0.0.1"]]

    with pytest.raises(requests.exceptions.SSLError) as caught:
        _post(f"https://{NAME}:{server.port}/predict")

    _names_the_host(str(caught.value), server.port, "127.0.0.1")
