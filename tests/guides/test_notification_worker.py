"""The notification e-mail goes through a real Celery worker (Redis + PostgreSQL)."""
import pytest

from guides import services
from guides.models import Notification
from tests.conftest import wait_for

pytestmark = pytest.mark.worker


def test_question_mail_is_sent_by_the_real_worker_after_commit(django_db_serialized_rollback, real_worker, annotator,
                                                               contract, curator):
    # serialized_rollback: an earlier transactional test flushed the role groups and licences; restore them.
    curator.email = "curator@example.org"
    curator.save()
    services.question_ask(asked_by=annotator, spec=contract.spec, title="Worker?", body="b")
    # The worker marks the notification mailed (console backend in its process), once.
    note = wait_for(lambda: Notification.objects.filter(user=curator, emailed_at__isnull=False).first(), timeout=60)
    assert note.message.endswith("Worker?")
