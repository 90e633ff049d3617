"""Audit of the question/answer notifications as vendors and curators meet them: who is
mailed (never a deactivated account), what the mail links to (a link that opens from a
mail client), and the unread badge once the question has been read."""
import pytest
from django.core import mail
from rest_framework.test import APIClient

from common import roles
from common.services import user_deactivate
from guides import selectors, services
from guides.models import Notification
from tests import factories


@pytest.fixture
def contract(vendor, spec):
    return factories.make_contract(vendor=vendor, spec=spec)


@pytest.fixture
def asker(annotator):
    annotator.email = "asker@example.org"
    annotator.save()
    return annotator


@pytest.fixture
def curator_with_mail(curator):
    curator.email = "curator@example.org"
    curator.save()
    return curator


def test_an_answer_to_a_deactivated_asker_is_not_mailed(asker, contract, curator, django_capture_on_commit_callbacks):
    question = services.question_ask(asked_by=asker, spec=contract.spec, title="Fraction bars?", body="b")
    user_deactivate(user=asker, by=curator)  # left the vendor: the account is off, the address may be reused
    with django_capture_on_commit_callbacks(execute=True):
        services.question_answer(question=question, author=curator, body="One region.")
    assert mail.outbox == []
    assert not Notification.objects.get(user=asker, kind=Notification.Kind.QUESTION_ANSWERED).email_wanted


def test_no_mail_to_someone_deactivated_before_the_mail_task_ran(annotator, contract, curator_with_mail,
                                                                 django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.question_ask(asked_by=annotator, spec=contract.spec, title="Fraction bars?", body="b")
    # The curator is deactivated while the mail task waits in the queue (or is retried).
    user_deactivate(user=curator_with_mail, by=factories.make_user(roles.CURATOR))
    for callback in callbacks:
        callback()
    assert mail.outbox == []
    assert Notification.objects.get(user=curator_with_mail).emailed_at is None


def test_the_mail_links_to_the_question_with_the_sites_address(annotator, contract, curator_with_mail, settings,
                                                               django_capture_on_commit_callbacks):
    settings.PUBLIC_BASE_URL = "https://mathset.example.org"
    if hasattr(settings, "MATHSET_BASE_URL"):
        del settings.MATHSET_BASE_URL
    with django_capture_on_commit_callbacks(execute=True):
        question = services.question_ask(asked_by=annotator, spec=contract.spec, title="Fraction bars?", body="b")
    # A bare "/questions/7/" opens nothing from a mail client.
    assert f"https://mathset.example.org/questions/{question.id}/" in mail.outbox[0].body


def test_an_explicit_mail_base_url_wins(annotator, contract, curator_with_mail, settings,
                                       django_capture_on_commit_callbacks):
    settings.PUBLIC_BASE_URL = "http://web:8000"  # how models reach the server, not people
    settings.MATHSET_BASE_URL = "https://mathset.example.org/"
    with django_capture_on_commit_callbacks(execute=True):
        question = services.question_ask(asked_by=annotator, spec=contract.spec, title="Fraction bars?", body="b")
    assert f"\n\nhttps://mathset.example.org/questions/{question.id}/" in mail.outbox[0].body


def _unread(user) -> int:
    api = APIClient()
    api.force_authenticate(user)
    return api.get("/api/v1/notifications/unread-count/").json()["unread"]


def test_reading_the_question_clears_its_notifications_from_the_badge(annotator, contract, curator, client):
    question = services.question_ask(asked_by=annotator, spec=contract.spec, title="Fraction bars?", body="b")
    other = services.question_ask(asked_by=annotator, spec=contract.spec, title="Primes?", body="b")
    services.question_answer(question=question, author=curator, body="One region.")
    services.question_answer(question=other, author=curator, body="Yes.")
    assert _unread(annotator) == 2 and _unread(curator) == 2
    # The asker follows the mail's link (straight to the question, not through /notifications/<id>/).
    client.force_login(annotator)
    assert client.get(f"/questions/{question.id}/").status_code == 200
    assert _unread(annotator) == 1  # the other question's answer is still unread
    assert selectors.notifications_of(annotator).get(question=other).read_at is None
    client.force_login(curator)
    assert client.get(f"/questions/{question.id}/").status_code == 200
    assert _unread(curator) == 1
    assert _unread(annotator) == 1  # one reader's visit clears nobody else's badge


def test_a_foreign_question_page_marks_nothing_read(annotator, contract, curator, client):
    question = services.question_ask(asked_by=annotator, spec=contract.spec, title="Fraction bars?", body="b")
    services.question_answer(question=question, author=curator, body="One region.")
    outsider = factories.make_user(roles.ANNOTATOR, vendor=factories.make_vendor())
    client.force_login(outsider)
    assert client.get(f"/questions/{question.id}/").status_code == 404
    assert _unread(annotator) == 1


def test_a_refused_reopen_says_why_on_the_vendors_page(annotator, contract, client):
    # Two tabs: the question was reopened in one; "Reopen" in the stale other one is refused.
    question = services.question_ask(asked_by=annotator, spec=contract.spec, title="Fraction bars?", body="b")
    client.force_login(annotator)
    response = client.post(f"/questions/{question.id}/", {"op": "reopen"})
    assert response.status_code == 200
    assert b"Only a closed question can be reopened." in response.content


@pytest.mark.django_db
def test_a_broker_that_is_down_does_not_fail_the_answer(monkeypatch, django_capture_on_commit_callbacks):
    """The mail task is sent after commit; a broker error there used to turn the saved answer
    into a 500. The answer and the in-app notification stand."""
    from guides import services as gs
    from guides.models import Notification
    from guides.tasks import send_notification_email

    def down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(send_notification_email, "delay", down)
    asker = factories.make_user(roles.ANNOTATOR)
    asker.email = "a@example.org"
    asker.save()
    with django_capture_on_commit_callbacks(execute=True):
        gs.notifications_create(users=[asker], kind=Notification.Kind.choices[0][0], message="Answered")
    assert Notification.objects.filter(user=asker).count() == 1
