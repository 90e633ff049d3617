"""Login, role landing pages, the users & tokens page and the vendors page."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from common import roles
from common.models import ApiToken
from common.services import api_token_rotate
from labeling.models import Vendor
from tests import factories
from tests.pages import field_errors, text

pytestmark = pytest.mark.django_db


def test_anonymous_home_goes_to_login(client):
    r = client.get("/")
    assert r.status_code == 302
    assert r["Location"].startswith("/accounts/login/")


def test_login_page_logs_in_and_lands_curator_on_spec_dashboard(client):
    factories.make_user(roles.CURATOR, username="cora")
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert 'for="id_username"' in page.content.decode() and 'for="id_password"' in page.content.decode()
    r = client.post("/accounts/login/", {"username": "cora", "password": "pass-word-123"}, follow=True)
    assert r.redirect_chain[-1][0] == "/specs/"
    assert "Dataset specs" in text(r)


def test_pages_name_an_icon_that_exists(client):
    # Without one the browser asked every page for /favicon.ico: a 404 logged in its console.
    import re

    from django.contrib.staticfiles import finders
    from django.templatetags.static import static

    html = client.get("/accounts/login/").content.decode()
    href = re.search(r'<link rel="icon" href="([^"]+)"', html).group(1)
    assert href == static("favicon.svg") and finders.find("favicon.svg")


def test_login_with_wrong_password_shows_error(client):
    factories.make_user(roles.CURATOR, username="cora")
    r = client.post("/accounts/login/", {"username": "cora", "password": "nope-nope-nope"})
    assert r.status_code == 200
    assert "Please enter a correct username and password" in text(r)


def test_logout_needs_post(client, curator):
    client.force_login(curator)
    assert client.get("/accounts/logout/").status_code == 405
    r = client.post("/accounts/logout/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("role", [roles.ANNOTATOR, roles.VENDOR_MANAGER])
def test_vendor_roles_land_on_my_work_showing_their_vendor(client, role):
    vendor = factories.make_vendor("Acme Labeling")
    client.force_login(factories.make_user(role, vendor=vendor))
    r = client.get("/", follow=True)
    assert r.redirect_chain[-1][0] == "/work/"
    assert "Vendor Acme Labeling" in text(r)
    assert roles.ROLE_LABELS[role] in text(r)


def test_reviewers_land_on_the_review_queue(client):
    client.force_login(factories.make_user(roles.REVIEWER))
    r = client.get("/", follow=True)
    assert r.redirect_chain[-1][0] == "/review/"


def test_model_team_lands_on_specs_and_api_info(client, model_team):
    spec = factories.make_spec(name="Formula reader")
    factories.make_image(spec=spec)
    client.force_login(model_team)
    r = client.get("/", follow=True)
    assert r.redirect_chain[-1][0] == "/model-team/"
    page = text(r)
    assert "Formula reader" in page and "/api/docs/" in r.content.decode()
    assert "none yet" in page  # no API token issued
    api_token_rotate(user=model_team)
    assert "issued" in text(client.get("/model-team/"))


def test_user_without_role_is_told_so(client):
    client.force_login(User.objects.create_user("norole", password="pass-word-123"))
    r = client.get("/")
    assert r.status_code == 403
    assert "no role" in text(r)


def test_my_work_refuses_curators_and_model_team(client, curator, model_team):
    for user in (curator, model_team):
        client.force_login(user)
        assert client.get("/work/").status_code == 403


@pytest.mark.parametrize("url", ["/people/", "/people/vendors/"])
def test_people_pages_are_for_curators_only(client, annotator, model_team, url):
    assert client.get(url).status_code == 302  # anonymous: to login
    for user in (annotator, model_team):
        client.force_login(user)
        assert client.get(url).status_code == 403


def test_users_page_lists_role_vendor_and_token_state(client, curator):
    vendor = factories.make_vendor("Acme Labeling")
    ann = factories.make_user(roles.ANNOTATOR, vendor=vendor, username="annie")
    factories.make_user(roles.MODEL_TEAM, username="mo")
    key = api_token_rotate(user=ann).key
    client.force_login(curator)
    page = text(client.get("/people/"))
    assert f"annie Annotator Acme Labeling active {key[:12]}… issued" in page
    assert key not in page
    assert "mo Model team — active none" in page


def test_users_page_query_count_does_not_grow_with_users(client, curator, django_assert_max_num_queries):
    client.force_login(curator)
    vendor = factories.make_vendor()
    for _ in range(3):
        factories.make_user(roles.ANNOTATOR, vendor=vendor)
    with django_assert_max_num_queries(12) as few:
        client.get("/people/")
    for _ in range(15):
        factories.make_user(roles.ANNOTATOR, vendor=vendor)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get("/people/").status_code == 200


def test_curator_creates_annotator_with_vendor(client, curator):
    vendor = factories.make_vendor("Acme Labeling")
    client.force_login(curator)
    r = client.post("/people/", {"username": "newbie", "password": "Long-enough-9", "role": roles.ANNOTATOR,
                                 "vendor": vendor.pk, "email": "n@example.org"}, follow=True)
    assert r.status_code == 200
    user = User.objects.get(username="newbie")
    assert roles.roles_of(user) == {roles.ANNOTATOR}
    assert user.vendor_membership.vendor == vendor
    assert "User newbie created." in text(r)
    assert user.check_password("Long-enough-9")


def test_create_user_errors_appear_beside_the_field(client, curator):
    client.force_login(curator)
    r = client.post("/people/", {"username": "nov", "password": "Long-enough-9", "role": roles.ANNOTATOR})
    assert r.status_code == 400
    assert "must belong to a vendor" in field_errors(r, "id_vendor")
    r = client.post("/people/", {"username": curator.username.upper(), "password": "Long-enough-9", "role": roles.CURATOR})
    assert "is taken" in field_errors(r, "id_username")
    r = client.post("/people/", {"username": "weak", "password": "password123", "role": roles.CURATOR})
    assert "too common" in field_errors(r, "id_password")
    r = client.post("/people/", {"username": "x", "password": "Long-enough-9", "role": "wizard"})
    assert "valid choice" in field_errors(r, "id_role")
    assert not User.objects.filter(username__in=["nov", "weak", "x"]).exists()


def _page_key(response) -> str:
    """The key the users page shows once, as a curator copies it."""
    from html.parser import HTMLParser

    class Finder(HTMLParser):
        key, inside = None, False

        def handle_starttag(self, tag, attrs):
            self.inside = ("aria-label", "API token") in attrs

        def handle_data(self, data):
            if self.inside and data.strip():
                Finder.key = data.strip()

    Finder().feed(response.content.decode())
    return Finder.key


def test_token_is_shown_once_and_rotation_revokes_the_old_one(client, curator, model_team):
    old = api_token_rotate(user=model_team).key
    client.force_login(curator)
    r = client.post(f"/people/{model_team.pk}/token/")
    assert r.status_code == 200
    new = _page_key(r)
    assert new and new != old and new.startswith("mst_")
    assert ApiToken.objects.get(user=model_team).digest == ApiToken.digest_of(new)
    assert not ApiToken.objects.filter(digest=ApiToken.digest_of(old)).exists()
    assert new not in client.get("/people/").content.decode()  # shown only once
    assert client.get(f"/people/{model_team.pk}/token/").status_code == 405


def test_curator_revokes_a_leaked_token_and_the_user_stays_active(client, curator, model_team):
    key = api_token_rotate(user=model_team).key
    client.force_login(curator)
    r = client.post(f"/people/{model_team.pk}/token/revoke/", follow=True)
    assert "The API token of" in text(r) and "is revoked" in text(r)
    assert not ApiToken.objects.filter(user=model_team).exists()
    model_team.refresh_from_db()
    assert model_team.is_active
    assert client.get(f"/people/{model_team.pk}/token/revoke/").status_code == 405
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/v1/users/me/").status_code == 401
    assert "had no API token" in text(client.post(f"/people/{model_team.pk}/token/revoke/", follow=True))


def test_deactivate_switches_user_off_and_revokes_token(client, curator, model_team):
    api_token_rotate(user=model_team)
    client.force_login(curator)
    r = client.post(f"/people/{model_team.pk}/deactivate/", follow=True)
    model_team.refresh_from_db()
    assert not model_team.is_active
    assert not ApiToken.objects.filter(user=model_team).exists()
    assert "deactivated" in text(r)


def test_curator_cannot_deactivate_themselves(client, curator):
    client.force_login(curator)
    r = client.post(f"/people/{curator.pk}/deactivate/", follow=True)
    curator.refresh_from_db()
    assert curator.is_active
    assert "cannot deactivate yourself" in text(r)


def test_vendors_page_lists_members_and_creates_vendor(client, curator):
    vendor = factories.make_vendor("Acme Labeling")
    factories.make_user(roles.ANNOTATOR, vendor=vendor)
    factories.make_user(roles.REVIEWER, vendor=vendor)
    client.force_login(curator)
    assert "Acme Labeling acme-labeling — 2 active" in text(client.get("/people/vendors/"))
    r = client.post("/people/vendors/", {"name": "Beta Crowd", "contact_email": "ops@beta.example"}, follow=True)
    assert Vendor.objects.filter(name="Beta Crowd", contact_email="ops@beta.example").exists()
    assert "Vendor Beta Crowd created." in text(r)


def test_vendor_errors_appear_beside_the_field(client, curator):
    factories.make_vendor("Acme Labeling")
    client.force_login(curator)
    r = client.post("/people/vendors/", {"name": "Acme Labeling"})
    assert r.status_code == 400
    assert "already exists" in field_errors(r, "id_name")
    r = client.post("/people/vendors/", {"name": "!!!"})
    assert "letters or digits" in field_errors(r, "id_name")
    assert Vendor.objects.count() == 1


# ------------------------------------------------- brute-force protection (common/login_limits.py)

LOCKED = "Too many failed login attempts. Try again in 15 minutes."


def _fail(client, username="cora", url="/accounts/login/", times=1, **extra):
    for _ in range(times):
        r = client.post(url, {"username": username, "password": "nope-nope-nope"}, **extra)
    return r


@pytest.fixture
def clock(monkeypatch):
    """Move django.utils.timezone.now forward: `clock.advance(seconds=...)`."""
    from datetime import timedelta

    from django.utils import timezone

    class Clock:
        now = timezone.now()

        def advance(self, **delta):
            self.now += timedelta(**delta)

    c = Clock()
    monkeypatch.setattr(timezone, "now", lambda: c.now)
    return c


def test_login_locks_username_after_ten_failures_with_a_message(client):
    factories.make_user(roles.CURATOR, username="cora")
    for _ in range(10):
        r = _fail(client)
        assert r.status_code == 200 and "Please enter a correct username and password" in text(r)
    r = _fail(client)
    assert r.status_code == 429
    assert int(r["Retry-After"]) == 900
    assert LOCKED in text(r) and "Please enter a correct" not in text(r)
    # Case does not make it another username; an unknown username locks out the same way.
    assert _fail(client, "CORA").status_code == 429
    _fail(client, "ghost", times=10)
    assert LOCKED in text(_fail(client, "ghost"))


def test_correct_password_is_refused_unchecked_during_lockout(client, monkeypatch):
    from django.contrib.auth.backends import ModelBackend

    factories.make_user(roles.CURATOR, username="cora")
    _fail(client, times=10)
    checked = []
    real = ModelBackend.authenticate
    monkeypatch.setattr(ModelBackend, "authenticate", lambda *a, **k: checked.append(1) or real(*a, **k))
    r = client.post("/accounts/login/", {"username": "cora", "password": "pass-word-123"})
    assert r.status_code == 429 and LOCKED in text(r)
    assert checked == []  # the password was not even checked
    assert client.get("/").status_code == 302  # not logged in


def test_lockout_ends_when_the_failures_leave_the_window(client, clock):
    factories.make_user(roles.CURATOR, username="cora")
    _fail(client, times=10)
    clock.advance(minutes=14)
    r = _fail(client)
    assert r.status_code == 429 and "Try again in 1 minute." in text(r)
    clock.advance(minutes=1, seconds=1)
    r = client.post("/accounts/login/", {"username": "cora", "password": "pass-word-123"})
    assert r.status_code == 302 and r["Location"] == "/"


def test_refused_attempts_do_not_extend_the_lockout(client, clock):
    factories.make_user(roles.CURATOR, username="cora")
    _fail(client, times=10)
    for _ in range(4):
        clock.advance(minutes=3)
        assert _fail(client).status_code == 429
    clock.advance(minutes=3, seconds=1)  # 15 min after the failures: the refusals did not count
    assert client.post("/accounts/login/", {"username": "cora", "password": "pass-word-123"}).status_code == 302


def test_successful_login_resets_the_username_count(client):
    from common.models import LoginFailure

    factories.make_user(roles.CURATOR, username="cora")
    _fail(client, times=9)
    r = client.post("/accounts/login/", {"username": "cora", "password": "pass-word-123"})
    assert r.status_code == 302
    assert not LoginFailure.objects.filter(username="cora").exists()
    client.post("/accounts/logout/")
    r = _fail(client, times=9)  # nine more do not lock: the earlier nine no longer count
    assert r.status_code == 200 and "Please enter a correct" in text(r)


def test_logins_without_a_client_request_are_not_counted(curator):
    # The test client's login() and force_login() (and the shell's authenticate()) pass no request.
    from django.test import Client

    from common.models import LoginFailure

    for _ in range(11):
        assert not Client().login(username=curator.username, password="wrong")
    assert not LoginFailure.objects.exists()
    assert Client().login(username=curator.username, password="pass-word-123")
    client = Client()
    client.force_login(curator)
    assert client.get("/").status_code == 302 and client.get("/")["Location"] == "/specs/"


def test_login_locks_client_address_across_usernames(client, settings):
    settings.MATHSET_LOGIN_FAILURES_PER_IP = 5
    factories.make_user(roles.CURATOR, username="cora")
    for i in range(5):
        assert _fail(client, f"guess{i}").status_code == 200
    r = client.post("/accounts/login/", {"username": "cora", "password": "pass-word-123"})
    assert r.status_code == 429 and LOCKED in text(r)
    # The username itself is not locked: from another address cora logs in.
    r = client.post("/accounts/login/", {"username": "cora", "password": "pass-word-123"}, REMOTE_ADDR="10.0.0.7")
    assert r.status_code == 302


def test_forwarded_for_is_ignored_unless_behind_a_proxy(client, settings):
    settings.MATHSET_LOGIN_FAILURES_PER_IP = 5
    for i in range(5):  # a client cannot dodge the address limit by forging the header
        _fail(client, f"guess{i}", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}")
    assert _fail(client, "guess9", HTTP_X_FORWARDED_FOR="203.0.113.99").status_code == 429


def test_behind_a_proxy_the_address_it_appended_counts(client, settings):
    from common.models import LoginFailure

    settings.MATHSET_PROXY_COUNT = 1
    settings.MATHSET_LOGIN_FAILURES_PER_IP = 5
    for i in range(5):  # the client forges the leftmost entry; the proxy appends what it saw
        _fail(client, f"guess{i}", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}, 198.51.100.4")
    assert set(LoginFailure.objects.values_list("ip", flat=True)) == {"198.51.100.4"}
    assert _fail(client, "guess9", HTTP_X_FORWARDED_FOR="198.51.100.4").status_code == 429
    assert _fail(client, "guess9", HTTP_X_FORWARDED_FOR="198.51.100.5").status_code == 200


def test_admin_login_failures_count_and_lockout_is_shown_there(client):
    factories.make_user(roles.CURATOR, username="cora")
    _fail(client, url="/admin/login/", times=10)
    assert _fail(client).status_code == 429  # counted together with the login page's
    r = client.post("/admin/login/", {"username": "cora", "password": "pass-word-123"})
    assert LOCKED in text(r)
    assert client.get("/admin/").status_code == 302


def test_authenticate_with_a_request_is_refused_during_lockout(client):
    # Any future endpoint taking a password through authenticate(request, ...) is covered
    # (the API has none: tokens are issued by curators).
    from django.contrib.auth import authenticate
    from django.test import RequestFactory

    factories.make_user(roles.CURATOR, username="cora")
    request = RequestFactory().post("/")
    assert authenticate(request, username="cora", password="pass-word-123") is not None
    _fail(client, times=10)
    assert authenticate(RequestFactory().post("/"), username="cora", password="pass-word-123") is None


def test_admin_lists_who_holds_a_token_without_any_key(client, curator, model_team):
    key = api_token_rotate(user=model_team).key
    client.force_login(curator)
    r = client.get("/admin/common/apitoken/")
    assert r.status_code == 200
    page = r.content.decode()
    assert model_team.username in page and key[:12] in page
    assert key not in page and ApiToken.objects.get().digest not in page
    assert client.get("/admin/common/apitoken/add/").status_code == 403
    assert client.get("/admin/common/loginfailure/").status_code == 200  # curators unlock usernames there
