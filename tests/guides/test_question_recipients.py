"""Who hears about a new question: every account that works as a curator, superusers
included (they count as curators on every page), and nobody switched off."""
from django.contrib.auth.models import User

from common import roles
from common.selectors import active_curators
from guides import services
from guides.models import Notification
from tests import factories


def _told(question):
    return set(Notification.objects.filter(question=question, kind=Notification.Kind.QUESTION_ASKED)
               .values_list("user__username", flat=True))


def test_a_superuser_outside_the_curator_group_is_told_of_a_new_question(annotator, vendor, spec, curator):
    factories.make_contract(vendor=vendor, spec=spec)
    admin = User.objects.create_superuser("root-curator", "root@example.org", "a-long-pass-2026")
    question = services.question_ask(asked_by=annotator, spec=spec, title="Fraction bars?", body="b")
    assert _told(question) == {curator.username, admin.username}


def test_a_switched_off_superuser_is_not_told(annotator, vendor, spec, curator):
    factories.make_contract(vendor=vendor, spec=spec)
    User.objects.create_superuser("gone-root", "gone@example.org", "a-long-pass-2026", is_active=False)
    question = services.question_ask(asked_by=annotator, spec=spec, title="Fraction bars?", body="b")
    assert _told(question) == {curator.username}


def test_a_superuser_in_the_curator_group_is_told_once(annotator, vendor, spec):
    factories.make_contract(vendor=vendor, spec=spec)
    both = factories.make_user(roles.CURATOR)
    both.is_superuser = True
    both.save()
    assert list(active_curators()).count(both) == 1
    question = services.question_ask(asked_by=annotator, spec=spec, title="Fraction bars?", body="b")
    assert Notification.objects.filter(question=question, user=both).count() == 1
