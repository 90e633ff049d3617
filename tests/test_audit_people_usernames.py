"""Audit of people: usernames differing only in case are one username, also when typed
in another Unicode form (full-width letters, which Django's User.clean() folds with NFKC)."""
import pytest
from django.contrib.auth.models import User

from common import roles
from tests import factories

pytestmark = pytest.mark.django_db


def test_fullwidth_spelling_of_a_taken_username_in_another_case_is_refused(curator_api):
    factories.make_user(roles.MODEL_TEAM, username="Bob")
    # "ｂob" folds to "bob": before, the case-blind check compared the unfolded name, so a
    # second account "bob" was created beside "Bob".
    r = curator_api.post("/api/v1/users/", {"username": "ｂob", "password": "long-enough-pw", "role": "model_team"})
    assert r.status_code == 400 and "taken" in r.json()["username"][0], r.content
    assert User.objects.filter(username__iexact="bob").count() == 1
