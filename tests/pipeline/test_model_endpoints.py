"""Where an external HTTP model may be reached (pipeline/endpoints.py): never a cloud metadata
or other link-local address, and only the hosts MATHSET_MODEL_HOSTS lists where it is set;
checked at registration and again before every call."""
from __future__ import annotations

import ipaddress

import pytest
import requests

from pipeline import endpoints, runtime
from pipeline.models import ModelVersion


@pytest.fixture
def dns(monkeypatch):
    """A resolver answering from a table (names missing from it do not resolve)."""
    table: dict[str, list[str]] = {}

    def resolve(host, port):
        if host not in table:
            raise OSError(f"{host} does not resolve")
        return [ipaddress.ip_address(a) for a in table[host]]

    monkeypatch.setattr(endpoints, "resolve", resolve)
    return table


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/",
    "http://[fe80::1]:8080/predict",
    "http://[::ffff:169.254.169.254]/",
    "http://0.0.0.0:8000/predict",
    "http://224.0.0.1/predict",
])
def test_metadata_and_link_local_addresses_are_always_refused(url, settings):
    settings.MATHSET_MODEL_HOSTS = "*"
    with pytest.raises(endpoints.EndpointRefused, match="no model may be reached"):
        endpoints.check(url, must_resolve=False)


def test_a_name_resolving_to_the_metadata_address_is_refused(dns):
    dns["metadata.google.internal"] = ["169.254.169.254"]
    with pytest.raises(endpoints.EndpointRefused, match="metadata.google.internal.*169.254.169.254"):
        endpoints.check("http://metadata.google.internal/computeMetadata/v1/", must_resolve=False)


def test_any_other_host_is_allowed_when_no_list_is_set(dns, settings):
    settings.MATHSET_MODEL_HOSTS = "*"
    dns["ml.lab"] = ["10.0.0.7"]
    for url in ("http://127.0.0.1:9090/predict", "http://[::1]:9090/predict", "https://ml.lab/predict"):
        endpoints.check(url, must_resolve=True)


def test_only_listed_names_domains_and_networks_are_allowed(dns, settings):
    settings.MATHSET_MODEL_HOSTS = "models.example, .lab.example, 10.20.0.0/16"
    dns.update({"models.example": ["192.0.2.5"], "ocr.lab.example": ["192.0.2.6"], "gpu7": ["10.20.3.4"],
                "wiki.internal": ["10.99.0.1"]})
    for url in ("http://models.example/p", "https://ocr.lab.example:8443/p", "http://gpu7/p", "http://10.20.9.9/p"):
        endpoints.check(url, must_resolve=True)
    for url in ("http://wiki.internal/", "http://10.99.0.1/", "http://127.0.0.1:9090/", "http://evil-lab.example/"):
        with pytest.raises(endpoints.EndpointRefused, match="not among the model hosts"):
            endpoints.check(url, must_resolve=False)


def test_a_name_must_resolve_when_called_but_not_when_registered(dns):
    endpoints.check("http://not-deployed-yet.lab/predict", must_resolve=False)
    with pytest.raises(endpoints.EndpointRefused, match="does not resolve"):
        endpoints.check("http://not-deployed-yet.lab/predict", must_resolve=True)


@pytest.mark.django_db
def test_registering_a_metadata_address_is_a_400_naming_the_field_and_stores_nothing(api, model_team):
    api.force_authenticate(model_team)
    resp = api.post("/api/v1/model-versions/http/", {"name": "x", "version": "1",
                                                     "endpoint_url": "http://169.254.169.254/latest/"}, format="json")
    assert resp.status_code == 400 and "no model may be reached" in resp.json()["endpoint_url"][0], resp.content
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_registering_an_unlisted_host_is_a_400_naming_the_setting(api, model_team, settings, dns):
    settings.MATHSET_MODEL_HOSTS = ".lab.example"
    api.force_authenticate(model_team)
    resp = api.post("/api/v1/model-versions/http/", {"name": "x", "version": "1",
                                                     "endpoint_url": "http://ml.elsewhere.example/predict"},
                    format="json")
    assert resp.status_code == 400 and "MATHSET_MODEL_HOSTS" in resp.json()["endpoint_url"][0]
    assert not ModelVersion.objects.exists()


def test_a_name_pointed_at_a_forbidden_address_after_registration_is_not_called(dns, monkeypatch):
    """DNS changed since registration (or rebinding): the check before the call refuses it."""
    calls = []
    monkeypatch.setattr(requests.Session, "send", lambda *a, **k: calls.append(a))
    dns["ml.lab"] = ["10.0.0.7"]
    endpoints.check("http://ml.lab/predict", must_resolve=False)
    dns["ml.lab"] = ["169.254.169.254"]
    with pytest.raises(runtime.ExternalModelError, match="is not called: host 'ml.lab' is at 169.254.169.254"):
        runtime.HttpPredictor("http://ml.lab/predict").read_urls(["http://x/1"])
    assert calls == []
