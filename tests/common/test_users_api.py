"""/api/v1/users/: curators create users in a role and issue API tokens."""
import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from common import roles
from common.models import ApiToken

pytestmark = pytest.mark.django_db


def test_curator_creates_annotator_for_a_vendor_and_issues_a_token(curator_api, vendor):
    api = APIClient()
    r = curator_api.post("/api/v1/users/", {"username": "ann1", "password": "long-enough-pw", "role": "annotator",
                                            "vendor": vendor.id})
    assert r.status_code == 201, r.content
    assert r.json()["roles"] == ["annotator"] and r.json()["vendor"] == vendor.id
    token = curator_api.post(f"/api/v1/users/{r.json()['id']}/token/").json()["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    me = api.get("/api/v1/users/me/").json()
    assert me["username"] == "ann1"
    rotated = curator_api.post(f"/api/v1/users/{r.json()['id']}/token/").json()["token"]
    assert rotated != token and api.get("/api/v1/users/me/").status_code == 401


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"role": "annotator"}, "vendor"),
        ({"role": "wizard"}, "role"),
        ({"role": "curator", "password": "short"}, "password"),
        ({"role": "curator", "password": "12345678"}, "password"),
        ({"role": "model_team", "vendor": "VENDOR"}, "vendor"),
        ({"role": "curator", "email": "not-an-email"}, "email"),
    ],
)
def test_bad_user_input_is_400_naming_the_field(curator_api, vendor, payload, field):
    payload = {"username": "new", "password": "long-enough-pw", **payload}
    if payload.get("vendor") == "VENDOR":
        payload["vendor"] = vendor.id
    before = User.objects.count()
    r = curator_api.post("/api/v1/users/", payload)
    assert r.status_code == 400 and field in r.json(), r.content
    assert User.objects.count() == before


def test_duplicate_username_is_refused(curator_api, curator):
    r = curator_api.post("/api/v1/users/", {"username": curator.username.upper(), "password": "long-enough-pw",
                                            "role": "curator"})
    assert r.status_code == 400 and "taken" in r.json()["username"][0]


def test_non_curators_cannot_create_users_or_tokens(api, annotator, model_team):
    for user in (annotator, model_team):
        api.force_authenticate(user)
        assert api.post("/api/v1/users/", {"username": "x", "password": "long-enough-pw", "role": "curator"}).status_code == 403
        assert api.post(f"/api/v1/users/{user.id}/token/").status_code == 403


def test_annotator_sees_only_themselves(api, annotator, curator):
    api.force_authenticate(annotator)
    assert [u["username"] for u in api.get("/api/v1/users/").json()["results"]] == [annotator.username]
    assert api.get(f"/api/v1/users/{curator.id}/").status_code == 404


def test_deactivated_user_loses_token(curator_api, annotator):
    api = APIClient()
    from common.services import api_token_rotate

    key = api_token_rotate(user=annotator).key
    assert curator_api.post(f"/api/v1/users/{annotator.id}/deactivate/").status_code == 200
    assert not ApiToken.objects.filter(digest=ApiToken.digest_of(key)).exists()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/v1/users/me/").status_code == 401


def test_role_helpers_follow_groups(curator, annotator, model_team):
    assert roles.is_curator(curator) and not roles.is_curator(annotator)
    assert roles.is_vendor_user(annotator) and not roles.is_vendor_user(model_team)
    assert roles.can_read_all_data(model_team) and not roles.can_read_all_data(annotator)
    assert roles.primary_role(annotator) == roles.ANNOTATOR


def test_the_database_keeps_only_a_digest_of_the_key(curator_api, annotator):
    from django.db import connection

    r = curator_api.post(f"/api/v1/users/{annotator.id}/token/")
    assert r.status_code == 201
    key = r.json()["token"]
    assert key.startswith("mst_") and len(key) > 40 and r.json()["prefix"] == key[:12]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM common_apitoken")
        stored = [str(v) for row in cursor.fetchall() for v in row]
    assert stored and not any(key in v for v in stored)  # no column holds the key
    listed = curator_api.get(f"/api/v1/users/{annotator.id}/").json()
    assert listed["token"]["prefix"] == key[:12] and key not in str(listed)


def test_curator_revokes_a_token_over_the_api_and_the_user_stays_active(curator_api, annotator):
    from common.services import api_token_rotate

    key = api_token_rotate(user=annotator).key
    assert curator_api.delete(f"/api/v1/users/{annotator.id}/token/").status_code == 204
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/v1/users/me/").status_code == 401
    annotator.refresh_from_db()
    assert annotator.is_active and curator_api.get(f"/api/v1/users/{annotator.id}/").json()["token"] is None
    r = curator_api.delete(f"/api/v1/users/{annotator.id}/token/")
    assert r.status_code == 404 and "no API token" in r.json()["detail"]


def test_non_curators_cannot_revoke_tokens(api, annotator, model_team):
    from common.services import api_token_rotate

    api_token_rotate(user=model_team)
    for user in (annotator, model_team):
        api.force_authenticate(user)
        assert api.delete(f"/api/v1/users/{model_team.id}/token/").status_code == 403
    assert ApiToken.objects.filter(user=model_team).exists()


def test_keys_issued_before_hashing_keep_working_and_lose_their_plain_copy(annotator):
    """Migration common.0003 reads rest_framework.authtoken's table of plain keys."""
    import importlib
    from types import SimpleNamespace

    from django.apps import apps
    from django.db import connection

    migration = importlib.import_module("common.migrations.0003_api_token")
    plain = "a" * 40
    with connection.cursor() as cursor:
        cursor.execute('CREATE TABLE authtoken_token ("key" varchar(40) PRIMARY KEY, user_id integer, created timestamp)')
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, %s, %s)", [plain, annotator.id, "2026-01-02 03:04:05"])
    try:
        # What the migration reads of its schema editor (a real one cannot open inside a test's transaction).
        migration.move_plain_keys(apps, SimpleNamespace(connection=connection))
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM authtoken_token")
            assert cursor.fetchone()[0] == 0
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE authtoken_token")
    token = ApiToken.objects.get(user=annotator)
    assert token.prefix == plain[:8] and token.created.year == 2026
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {plain}")
    assert api.get("/api/v1/users/me/").json()["username"] == annotator.username
