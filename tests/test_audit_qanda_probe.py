import pytest
from django.core import mail
from rest_framework.test import APIClient

from common import roles
from common.services import user_deactivate
from guides import services, rendering
from guides.models import Notification
from tests import factories


@pytest.fixture
def contract(vendor, spec):
    return factories.make_contract(vendor=vendor, spec=spec)


def test_deactivated_asker_mail(annotator, contract, curator, django_capture_on_commit_callbacks):
    annotator.email = "a@example.org"; annotator.save()
    q = services.question_ask(asked_by=annotator, spec=contract.spec, title="T", body="B")
    user_deactivate(user=annotator, by=curator)
    annotator.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        services.question_answer(question=q, author=curator, body="ans")
    print("outbox", [m.to for m in mail.outbox], Notification.objects.filter(user=annotator).count())


def test_deactivated_between(annotator, contract, curator, django_capture_on_commit_callbacks):
    curator.email = "c@example.org"; curator.save()
    with django_capture_on_commit_callbacks(execute=False) as cbs:
        services.question_ask(asked_by=annotator, spec=contract.spec, title="T", body="B")
    user_deactivate(user=curator, by=factories.make_user(roles.CURATOR))
    for cb in cbs:
        cb()
    print("outbox2", [m.to for m in mail.outbox], [m.body for m in mail.outbox])


def test_render():
    for s in ["$<img src=x onerror=alert(1)>$", "[x](javascript:alert(1))", "<script>alert(1)</script>",
              '$x" onmouseover="a$', "`$a$`", "$$\n<b>$$", "x" * 30000, "[a](<javascript:alert(1)>)",
              "<a href='data:text/html,x'>d</a>", "![i](http://evil/x.png)"]:
        print(repr(rendering.render_markdown(s)[:300]))


def test_long_title_page(annotator, contract, client):
    client.force_login(annotator)
    r = client.post("/questions/new/", {"spec": contract.spec_id, "title": "x" * 500, "body": "b"})
    print("page", r.status_code)
    r = client.post("/questions/new/", {"spec": contract.spec_id, "title": "ok", "body": "b" * 30000})
    print("page body", r.status_code, b"At most" in r.content)
    api = APIClient(); api.force_authenticate(annotator)
    r = api.post("/api/v1/questions/", {"spec": contract.spec_id, "title": "ok", "body": "b" * 30000})
    print("api body", r.status_code, r.content[:200])
    r = api.post("/api/v1/questions/", {"spec": contract.spec_id, "title": "ok", "body": "b", "region": "zz"})
    print("api region", r.status_code, r.content[:200])
    r = api.post("/api/v1/questions/", {"spec": contract.spec_id, "title": "ok", "body": "b", "task_ref": 10**30})
    print("api task_ref", r.status_code, r.content[:200])


def test_answer_long(annotator, contract, curator, client):
    q = services.question_ask(asked_by=annotator, spec=contract.spec, title="T", body="B")
    client.force_login(curator)
    r = client.post(f"/questions/{q.id}/", {"op": "answer", "a-body": "x" * 30000})
    print("answer long", r.status_code, b"At most" in r.content)
    r = client.post(f"/questions/{q.id}/", {"op": "close"})
    r = client.post(f"/questions/{q.id}/", {"op": "answer", "a-body": "x"})
    print("answer closed", r.status_code, b"closed" in r.content)
    r = client.post(f"/questions/{q.id}/", {"op": "promote", "p-faq_question": "", "p-faq_answer": ""})
    print("promote", r.status_code)
