"""One account per username ignoring case, held by the database (migration common.0004):
two creates racing past the service's check cannot both store "Bob" and "bob"."""
import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models.query import QuerySet

from common import roles
from common.services import user_create
from tests import factories

pytestmark = pytest.mark.django_db


def test_the_database_refuses_a_second_account_differing_only_in_case():
    User.objects.create(username="Bob")
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(username="bob")
    assert User.objects.filter(username__iexact="bob").count() == 1


def test_a_create_that_lost_the_race_is_a_clear_username_error(monkeypatch):
    User.objects.create(username="Bob")
    # The other request's insert lands between this one's check and its insert: the check
    # still sees nobody.
    monkeypatch.setattr(QuerySet, "exists", lambda self: False)
    with pytest.raises(ValidationError) as exc:
        user_create(username="bob", password="a-long-pass-2026", role=roles.CURATOR)
    assert "username" in exc.value.message_dict
    assert list(User.objects.filter(username__iexact="bob").values_list("username", flat=True)) == ["Bob"]


def test_the_api_answers_the_race_with_a_400_on_the_username(curator_api, monkeypatch):
    User.objects.create(username="Bob")
    monkeypatch.setattr(QuerySet, "exists", lambda self: False)
    r = curator_api.post("/api/v1/users/", {"username": "bob", "password": "a-long-pass-2026",
                                             "role": roles.CURATOR}, format="json")
    assert r.status_code == 400, r.content
    assert "username" in r.json()


def test_renaming_in_the_admin_to_anothers_name_in_another_case_is_a_form_error(client):
    admin = User.objects.create_superuser("root", "root@example.org", "a-long-pass-2026")
    factories.make_user(roles.ANNOTATOR, vendor=factories.make_vendor(), username="Alice")
    target = factories.make_user(roles.CURATOR, username="carol")
    client.force_login(admin)
    page = client.get(f"/admin/auth/user/{target.pk}/change/")
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k not in ("groups", "user_permissions",
                                                                                  "password", "last_login")}
    data.update(username="ALICE", date_joined_0=target.date_joined.strftime("%Y-%m-%d"),
                date_joined_1=target.date_joined.strftime("%H:%M:%S"), is_active="on", is_staff="on")
    r = client.post(f"/admin/auth/user/{target.pk}/change/", data)
    assert r.status_code == 200  # the form again, with the error, not a 500
    assert "is taken" in r.content.decode()
    target.refresh_from_db()
    assert target.username == "carol"


def test_renaming_a_user_to_their_own_name_in_another_case_is_allowed(client):
    admin = User.objects.create_superuser("root", "root@example.org", "a-long-pass-2026")
    from common.admin import CaselessUserChangeForm

    form = CaselessUserChangeForm(instance=admin, data={"username": "Root", "date_joined": admin.date_joined})
    form.is_valid()
    assert "username" not in form.errors
