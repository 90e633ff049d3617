"""The work queue's gate: annotators acknowledge the current guide version first."""
from guides import selectors, services
from guides.models import GuideAcknowledgement
from tests import factories


def test_no_guide_means_no_acknowledgement_needed(annotator, spec):
    assert selectors.guide_acknowledgement_required(user=annotator, spec=spec) is None


def test_a_draft_does_not_gate_the_queue(annotator, contract, curator):
    factories.make_guide(spec=contract.spec, by=curator, publish=False)
    assert selectors.guide_acknowledgement_required(user=annotator, spec=contract.spec) is None


def test_published_version_must_be_acknowledged_then_gate_opens(annotator, published):
    spec = published.guide.spec
    assert selectors.guide_acknowledgement_required(user=annotator, spec=spec) == published
    services.guide_acknowledge(version=published, user=annotator)
    assert selectors.guide_acknowledgement_required(user=annotator, spec=spec) is None


def test_new_version_asks_again(annotator, published, curator):
    spec = published.guide.spec
    services.guide_acknowledge(version=published, user=annotator)
    v2 = services.guide_version_create(guide=published.guide, created_by=curator, body_md="Changed rules")
    assert selectors.guide_acknowledgement_required(user=annotator, spec=spec) is None  # still a draft
    services.guide_version_publish(version=v2, by=curator)
    assert selectors.guide_acknowledgement_required(user=annotator, spec=spec) == v2


def test_acknowledging_a_replaced_version_is_refused_and_does_not_open_gate(annotator, published, curator, api):
    v2 = services.guide_version_create(guide=published.guide, created_by=curator, body_md="Changed")
    services.guide_version_publish(version=v2, by=curator)
    api.force_authenticate(annotator)
    response = api.post(f"/api/v1/guide-versions/{published.id}/acknowledge/")
    assert response.status_code == 400 and "version" in response.json()
    assert selectors.guide_acknowledgement_required(user=annotator, spec=published.guide.spec) == v2


def test_one_annotator_acknowledging_does_not_clear_another(annotator, published, vendor):
    from common import roles

    colleague = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    services.guide_acknowledge(version=published, user=annotator)
    assert selectors.guide_acknowledgement_required(user=colleague, spec=published.guide.spec) == published


def test_acknowledge_endpoint_is_idempotent_and_curator_sees_readers(annotator_api, annotator, published,
                                                                     curator_api, vendor):
    from common import roles

    other = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    for _ in range(2):
        assert annotator_api.post(f"/api/v1/guide-versions/{published.id}/acknowledge/").status_code == 201
    assert GuideAcknowledgement.objects.filter(version=published, user=annotator).count() == 1
    readers = {r["username"]: r for r in curator_api.get(f"/api/v1/guide-versions/{published.id}/readers/").json()}
    assert readers[annotator.username]["acknowledged_at"] is not None
    assert readers[annotator.username]["latest_read_version"] == published.number
    assert readers[other.username]["acknowledged_at"] is None
    acks = curator_api.get("/api/v1/guide-acknowledgements/", {"version": published.id}).json()
    assert [a["username"] for a in acks["results"]] == [annotator.username]


def test_annotator_cannot_see_who_else_has_read(annotator_api, published):
    assert annotator_api.get(f"/api/v1/guide-versions/{published.id}/readers/").status_code == 403


def test_version_payload_tells_annotator_whether_they_acknowledged(annotator_api, published):
    url = f"/api/v1/guide-versions/{published.id}/"
    assert annotator_api.get(url).json()["acknowledged_by_me"] is False
    annotator_api.post(url + "acknowledge/")
    assert annotator_api.get(url).json()["acknowledged_by_me"] is True


def test_queue_can_ask_the_api_which_version_to_acknowledge(annotator_api, published, foreign_api):
    url = "/api/v1/guide-versions/acknowledgement-required/"
    spec_id = published.guide.spec_id
    assert annotator_api.get(url, {"spec": spec_id}).json() == {
        "spec": spec_id, "version": published.id, "number": 1, "url": f"/guides/{published.guide_id}/"}
    annotator_api.post(f"/api/v1/guide-versions/{published.id}/acknowledge/")
    assert annotator_api.get(url, {"spec": spec_id}).json()["version"] is None
    bad = foreign_api.get(url, {"spec": spec_id})  # a spec of another vendor
    assert bad.status_code == 400 and "spec" in bad.json()
    assert annotator_api.get(url).status_code == 400
