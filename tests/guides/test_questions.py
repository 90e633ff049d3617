"""Questions and answers: asking about a region, answering, notifications in the
app and by email, and promoting an answer to the next guide version's FAQ."""
import io

import pytest
from django.core import mail
from PIL import Image as PILImage

from common import roles
from guides import services
from guides.models import Notification, Question
from tests import factories

QUAD = [[20, 10], [180, 10], [180, 60], [20, 60]]


@pytest.fixture
def curator_with_mail(curator):
    curator.email = "curator@example.org"
    curator.save()
    return curator


@pytest.fixture
def example_in_guide(published, curator, example_image):
    """The example image is shown in the published guide, so the annotator may point at it."""
    v2 = services.guide_version_create(guide=published.guide, created_by=curator)
    services.guide_example_add(version=v2, image=example_image, kind="good", regions=[QUAD])
    services.guide_version_publish(version=v2, by=curator)
    return v2


def _ask(api, spec_obj, **extra):
    payload = {"spec": spec_obj.id, "title": "Is a fraction bar one region?", "body": "See the marked part."}
    payload.update(extra)
    return api.post("/api/v1/questions/", payload)


def test_annotator_asks_about_a_region_and_curators_get_mail(annotator_api, contract, example_in_guide,
                                                             example_image, curator_with_mail,
                                                             django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = _ask(annotator_api, contract.spec, guide_version=example_in_guide.id, image=example_image.id,
                        region=QUAD)
    assert response.status_code == 201, response.content
    question = response.json()
    assert question["status"] == "open" and question["vendor"] == contract.vendor_id
    assert [m.to for m in mail.outbox] == [[curator_with_mail.email]]
    assert "Is a fraction bar one region?" in mail.outbox[0].body
    assert Notification.objects.get(user=curator_with_mail).emailed_at is not None
    crop = annotator_api.get(question["crop_url"])
    assert crop.status_code == 200 and crop["Content-Type"] == "image/jpeg"
    assert PILImage.open(io.BytesIO(crop.content)).size == (160, 50)  # the quad, straightened


def test_mail_is_sent_only_after_commit_and_only_once(annotator, contract, curator_with_mail,
                                                      django_capture_on_commit_callbacks):
    from guides.tasks import send_notification_email

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.question_ask(asked_by=annotator, spec=contract.spec, title="t", body="b")
    assert mail.outbox == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert len(mail.outbox) == 1
    send_notification_email.delay(Notification.objects.get(user=curator_with_mail).id)  # a retried task
    assert len(mail.outbox) == 1


def test_curator_answers_asker_is_notified_in_app_and_by_mail(annotator, annotator_api, contract, curator_api,
                                                              django_capture_on_commit_callbacks):
    annotator.email = "ann@example.org"
    annotator.save()
    question = services.question_ask(asked_by=annotator, spec=contract.spec, title="Q", body="B")
    with django_capture_on_commit_callbacks(execute=True):
        response = curator_api.post(f"/api/v1/questions/{question.id}/answer/", {"body": "Yes: one region, $\\frac{a}{b}$."})
    assert response.status_code == 201
    assert response.json()["status"] == "answered"
    assert 'data-latex="\\frac{a}{b}"' in response.json()["answers"][0]["body_html"]
    assert [m.to for m in mail.outbox] == [["ann@example.org"]]
    assert annotator_api.get("/api/v1/notifications/unread-count/").json() == {"unread": 1}
    note = annotator_api.get("/api/v1/notifications/").json()["results"][0]
    assert note["kind"] == "question_answered" and note["url"] == f"/questions/{question.id}/"
    annotator_api.post(f"/api/v1/notifications/{note['id']}/read/")
    assert annotator_api.get("/api/v1/notifications/unread-count/").json() == {"unread": 0}
    # The annotator sees the answer.
    seen = annotator_api.get(f"/api/v1/questions/{question.id}/").json()
    assert [a["body"] for a in seen["answers"]] == ["Yes: one region, $\\frac{a}{b}$."]


def test_only_curators_answer_and_promote(annotator_api, annotator, contract):
    question = services.question_ask(asked_by=annotator, spec=contract.spec, title="Q", body="B")
    assert annotator_api.post(f"/api/v1/questions/{question.id}/answer/", {"body": "me"}).status_code == 403
    assert annotator_api.post(f"/api/v1/questions/{question.id}/promote/").status_code == 403


def test_status_moves_open_answered_closed_and_reopens(annotator_api, annotator, contract, curator_api):
    question = services.question_ask(asked_by=annotator, spec=contract.spec, title="Q", body="B")
    curator_api.post(f"/api/v1/questions/{question.id}/answer/", {"body": "A"})
    assert annotator_api.post(f"/api/v1/questions/{question.id}/close/").json()["status"] == "closed"
    answer = curator_api.post(f"/api/v1/questions/{question.id}/answer/", {"body": "late"})
    assert answer.status_code == 400 and "status" in answer.json()
    assert annotator_api.post(f"/api/v1/questions/{question.id}/reopen/").json()["status"] == "answered"


def test_promoted_answer_appears_in_the_next_version_faq_not_the_published_one(annotator, contract, published,
                                                                               curator, curator_api, annotator_api):
    question = services.question_ask(asked_by=annotator, spec=contract.spec, title="Fraction bars?", body="B")
    services.question_answer(question=question, author=curator, body="One region per fraction.")
    response = curator_api.post(f"/api/v1/questions/{question.id}/promote/",
                                {"faq_question": "Is a fraction one region?"})
    assert response.status_code == 200 and response.json()["promoted_to_faq"] is True
    # The published version is immutable: its FAQ is unchanged.
    assert annotator_api.get("/api/v1/faq/").json()["results"] == []
    v2 = curator_api.post("/api/v1/guide-versions/", {"guide": published.guide_id, "change_notes": "FAQ"}).json()
    assert [(f["question_text"], f["answer_md"]) for f in v2["faq"]] == [
        ("Is a fraction one region?", "One region per fraction.")]
    curator_api.post(f"/api/v1/guide-versions/{v2['id']}/publish/")
    faq = annotator_api.get("/api/v1/faq/", {"spec": contract.spec_id}).json()["results"]
    assert [(f["version_number"], f["question_text"]) for f in faq] == [(2, "Is a fraction one region?")]
    # ...and it is carried on, once, into version 3.
    v3 = services.guide_version_create(guide=published.guide, created_by=curator)
    assert [f.source_question_id for f in v3.faq.all()] == [question.id]


def test_promotion_while_a_draft_is_open_lands_in_that_draft(annotator, contract, published, curator):
    draft = services.guide_version_create(guide=published.guide, created_by=curator)
    question = services.question_ask(asked_by=annotator, spec=contract.spec, title="Q", body="B")
    services.question_answer(question=question, author=curator, body="A")
    services.question_promote_to_faq(question=question, by=curator)
    assert [f.answer_md for f in draft.faq.all()] == ["A"]
    services.guide_version_publish(version=draft, by=curator)
    assert draft.faq.count() == 1  # not added twice on publishing


def test_unanswered_question_cannot_be_promoted(annotator, contract, curator_api):
    question = services.question_ask(asked_by=annotator, spec=contract.spec, title="Q", body="B")
    response = curator_api.post(f"/api/v1/questions/{question.id}/promote/")
    assert response.status_code == 400 and "answer" in response.json()


@pytest.mark.parametrize("extra,field", [
    ({"title": ""}, "title"),
    ({"body": ""}, "body"),
    ({"spec": 999999}, "spec"),
    ({"region": QUAD}, "region"),                                   # a region without its image
    ({"image": "IMG", "region": [[0, 0], [5, 5]]}, "region"),        # two points
    ({"image": "IMG", "region": [[0, 0], [10, 0], [10, 10], [0, 999]]}, "region"),  # outside the image
    ({"image": "IMG", "region": "garbage"}, "region"),
    ({"image": 999999}, "image"),
    ({"guide_version": 999999}, "guide_version"),
    ({"task_ref": -3}, "task_ref"),
    ({"task_ref": 2**63}, "task_ref"),                               # beyond a 64-bit id: not a database error
    ({"task_ref": 10**20}, "task_ref"),
    ({"image": "IMG", "region": [[10**400, 0], [10, 0], [10, 10], [0, 10]]}, "region"),  # beyond float range
    ({"image": "IMG", "region": [[True, 10], [180, 10], [180, 60], [20, 60]]}, "region"),  # a boolean is no number
    ({"image": "IMG", "region": [["20", 10], [180, 10], [180, 60], [20, 60]]}, "region"),  # nor a numeric string
])
def test_bad_question_input_names_the_field(annotator_api, contract, example_in_guide, example_image, extra, field):
    extra = {k: (example_image.id if v == "IMG" else v) for k, v in extra.items()}
    response = _ask(annotator_api, contract.spec, **extra)
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert Question.objects.count() == 0


def test_annotator_cannot_point_at_an_image_they_cannot_see(annotator_api, contract):
    hidden = factories.make_image(spec=contract.spec)  # not in any guide, not in their tasks
    response = _ask(annotator_api, contract.spec, image=hidden.id, region=QUAD)
    assert response.status_code == 400 and "image" in response.json()


def test_curator_cannot_ask(curator_api, contract):
    response = _ask(curator_api, contract.spec)
    assert response.status_code == 400 and "asked_by" in response.json()


def test_questions_list_query_count_is_flat(annotator, contract, curator, curator_api, django_assert_max_num_queries):
    for n in range(5):
        q = services.question_ask(asked_by=annotator, spec=contract.spec, title=f"Q{n}", body="B")
        services.question_answer(question=q, author=curator, body="A")
    with django_assert_max_num_queries(6):
        response = curator_api.get("/api/v1/questions/")
    assert response.json()["count"] == 5


def test_vendor_manager_sees_their_vendors_questions(annotator, contract, vendor, api):
    manager = factories.make_user(roles.VENDOR_MANAGER, vendor=vendor)
    question = services.question_ask(asked_by=annotator, spec=contract.spec, title="Q", body="B")
    api.force_authenticate(manager)
    assert [q["id"] for q in api.get("/api/v1/questions/").json()["results"]] == [question.id]


def test_rewording_a_promoted_answer_reaches_the_next_version_only(annotator, contract, published, curator):
    question = services.question_ask(asked_by=annotator, spec=contract.spec, title="Q", body="B")
    services.question_answer(question=question, author=curator, body="Old wording")
    services.question_promote_to_faq(question=question, by=curator)
    v2 = services.guide_version_publish(version=services.guide_version_create(guide=published.guide,
                                                                              created_by=curator), by=curator)
    services.question_promote_to_faq(question=question, by=curator, faq_answer="New wording")
    v3 = services.guide_version_create(guide=published.guide, created_by=curator)
    assert [f.answer_md for f in v2.faq.all()] == ["Old wording"]
    assert [f.answer_md for f in v3.faq.all()] == ["New wording"]
