"""Login lockout by username *and* address (common/login_limits.py).

Wrong passwords typed for a username from one address lock that username from that
address only: an attacker cannot lock the real user, who logs in from elsewhere, out of
their account. The attacker stays limited, by the (username, address) pair and by the
address limit; only failures from many addresses (a distributed attack) lock the
username everywhere, at a much higher threshold.
"""
from __future__ import annotations

import pytest

from common import roles
from tests import factories
from tests.pages import text

pytestmark = pytest.mark.django_db

ATTACKER = "203.0.113.9"
REAL_USER = "198.51.100.7"
PASSWORD = "pass-word-123"
LOCKED = "Too many failed login attempts."


def _attempt(client, *, ip: str, username: str = "cora", password: str = "nope-nope-nope"):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)


@pytest.fixture
def cora(db):
    return factories.make_user(roles.CURATOR, username="cora")


def test_real_user_logs_in_from_another_address_while_the_attacker_is_locked(client, cora):
    from django.test import Client

    for _ in range(10):
        assert _attempt(client, ip=ATTACKER).status_code == 200  # wrong password, counted
    r = _attempt(client, ip=ATTACKER)
    assert r.status_code == 429 and LOCKED in text(r)

    r = _attempt(Client(), ip=REAL_USER, password=PASSWORD)
    assert r.status_code == 302 and r["Location"] == "/"


def test_the_attacker_stays_limited_for_that_username(client, cora, monkeypatch):
    from django.contrib.auth.backends import ModelBackend

    from common.models import LoginFailure

    for _ in range(10):
        _attempt(client, ip=ATTACKER)
    checked = []
    real = ModelBackend.authenticate
    monkeypatch.setattr(ModelBackend, "authenticate", lambda *a, **k: checked.append(1) or real(*a, **k))
    for _ in range(20):  # keeps guessing: refused unchecked, and not counted
        assert _attempt(client, ip=ATTACKER).status_code == 429
    assert _attempt(client, ip=ATTACKER, username="CORA").status_code == 429  # case is no way round
    assert _attempt(client, ip=ATTACKER, password=PASSWORD).status_code == 429  # even the right password
    assert checked == []
    assert LoginFailure.objects.filter(username="cora").count() == 10


def test_one_address_alone_cannot_lock_the_username_everywhere(client, cora, settings):
    from django.test import Client

    # However long it keeps going, one address contributes at most the pair limit to the
    # username-wide count, which is well above it.
    assert settings.MATHSET_LOGIN_FAILURES_PER_USERNAME > settings.MATHSET_LOGIN_FAILURES_PER_USERNAME_AND_IP
    for _ in range(settings.MATHSET_LOGIN_FAILURES_PER_USERNAME + 1):
        _attempt(client, ip=ATTACKER)
    assert _attempt(Client(), ip=REAL_USER, password=PASSWORD).status_code == 302


def test_the_address_limit_still_stops_a_spray_from_one_address(client, cora, settings):
    settings.MATHSET_LOGIN_FAILURES_PER_IP = 5
    for i in range(5):
        assert _attempt(client, ip=ATTACKER, username=f"guess{i}").status_code == 200
    assert _attempt(client, ip=ATTACKER, username="cora", password=PASSWORD).status_code == 429
    assert _attempt(client, ip=REAL_USER, username="cora", password=PASSWORD).status_code == 302


def test_many_addresses_together_lock_the_username_everywhere(client, cora, settings):
    # A distributed attack: each address stays under the pair limit, together they reach
    # the username-wide one, which then applies to every address, the real user's too.
    settings.MATHSET_LOGIN_FAILURES_PER_USERNAME_AND_IP = 3
    settings.MATHSET_LOGIN_FAILURES_PER_USERNAME = 6
    for i in range(3):
        for _ in range(2):
            assert _attempt(client, ip=f"203.0.113.{i}").status_code == 200
    r = _attempt(client, ip=REAL_USER, password=PASSWORD)
    assert r.status_code == 429 and LOCKED in text(r)


def test_username_wide_limit_can_be_switched_off(client, cora, settings):
    settings.MATHSET_LOGIN_FAILURES_PER_USERNAME_AND_IP = 3
    settings.MATHSET_LOGIN_FAILURES_PER_USERNAME = 0
    for i in range(5):
        for _ in range(3):
            _attempt(client, ip=f"203.0.113.{i}")
        assert _attempt(client, ip=f"203.0.113.{i}").status_code == 429  # each pair is locked
    assert _attempt(client, ip=REAL_USER, password=PASSWORD).status_code == 302


def test_the_real_users_login_does_not_give_the_attacker_fresh_guesses(client, cora):
    from django.test import Client

    for _ in range(10):
        _attempt(client, ip=ATTACKER)
    _attempt(Client(), ip=REAL_USER)  # one typo at home, then the right password
    assert _attempt(Client(), ip=REAL_USER, password=PASSWORD).status_code == 302
    assert _attempt(client, ip=ATTACKER).status_code == 429  # still locked at the attacker's address
    from common.models import LoginFailure

    assert not LoginFailure.objects.filter(ip=REAL_USER).exists()  # the user's own typo is forgiven
