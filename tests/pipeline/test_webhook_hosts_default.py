"""Webhook receivers by default must be public addresses; metadata services are never reached.

Model teams register webhooks, and a delivery's recorded status or connection error tells them what
answered: with any host allowed, a webhook could map the ports of the platform's own network. The
default `MATHSET_WEBHOOK_HOSTS` ("public") takes only globally routable addresses; an internal
receiver is listed by name or network. Metadata services are refused whatever the setting says,
Alibaba Cloud's (100.100.100.200) and 6to4 spellings of forbidden IPv4 addresses included.
"""
from __future__ import annotations

import pytest
from django.conf import settings as django_settings

from pipeline import endpoints
from pipeline.models import Webhook
from tests.labeling.conftest import client_for

pytestmark = pytest.mark.django_db

HOOKS = "MATHSET_WEBHOOK_HOSTS"


def _post(user, url: str):
    return client_for(user).post("/api/v1/webhooks/", {"url": url, "events": ["snapshot.ready"]}, format="json")


def test_the_default_takes_public_addresses_only():
    assert django_settings.MATHSET_WEBHOOK_HOSTS == "public"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "http://[::1]/hook", "http://10.0.0.5/hook", "http://192.168.1.20/hook",
    "http://172.16.0.1/hook", "http://100.64.0.1/hook", "http://[fc00::1]/hook", "http://[::ffff:10.0.0.5]/hook",
    "http://[2002:a00:5::]/hook",                     # 6to4 for 10.0.0.5
])
def test_by_default_a_webhook_to_an_internal_address_is_a_400_naming_url(model_team, settings, url):
    settings.MATHSET_WEBHOOK_HOSTS = "public"
    r = _post(model_team, url)
    assert r.status_code == 400 and list(r.json()) == ["url"], r.content
    assert "MATHSET_WEBHOOK_HOSTS" in r.json()["url"][0]
    assert not Webhook.objects.exists()


def test_by_default_a_public_address_or_a_name_not_resolving_yet_is_taken(model_team, settings):
    settings.MATHSET_WEBHOOK_HOSTS = "public"
    assert _post(model_team, "https://93.184.216.34/hook").status_code == 201
    # checked again, and must then resolve to a public address, before every delivery
    assert _post(model_team, "https://hooks.invalid/hook").status_code == 201


def test_an_internal_receiver_is_taken_when_listed_beside_public(model_team, settings):
    settings.MATHSET_WEBHOOK_HOSTS = "public, 10.20.0.0/16"
    assert _post(model_team, "http://10.20.3.4/hook").status_code == 201
    assert _post(model_team, "http://10.21.3.4/hook").status_code == 400


@pytest.mark.parametrize("host", ["100.100.100.200", "[2002:6464:64c8::]", "[2002:a9fe:a9fe::1]",
                                  "[::ffff:169.254.169.254]"])
@pytest.mark.parametrize("setting", ["MATHSET_MODEL_HOSTS", HOOKS])
def test_metadata_services_are_refused_whatever_the_hosts_setting(settings, host, setting):
    setattr(settings, setting, "*")
    with pytest.raises(endpoints.EndpointRefused, match="metadata"):
        endpoints.check(f"http://{host}/latest/meta-data/", must_resolve=False, hosts_setting=setting)
