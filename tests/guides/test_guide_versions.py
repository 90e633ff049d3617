"""Guides and their versions through the API: drafts, publishing, immutability,
examples with regions, FAQ carry-over, diffs, and 400s naming the field."""
import io

import pytest
from PIL import Image as PILImage

from guides import services
from guides.models import GuideVersion
from tests import factories


def _create_guide(curator_api, spec, body="First rules $a+b$"):
    response = curator_api.post("/api/v1/guides/", {"spec": spec.id, "title": "Formula guide", "body_md": body,
                                                     "change_notes": "Initial"})
    assert response.status_code == 201, response.content
    return response.json()


def test_curator_writes_publishes_and_the_text_is_sanitised(curator_api, spec):
    guide = _create_guide(curator_api, spec, body="Rules <script>alert(1)</script> $x_1$")
    draft_id = guide["draft_version"]
    assert guide["current_version"] is None
    response = curator_api.patch(f"/api/v1/guide-versions/{draft_id}/", {"body_md": "Use $\\frac{a}{b}$ <img src=x onerror=alert(1)>"})
    assert response.status_code == 200
    body = response.json()
    assert "onerror" not in body["body_html"] and 'data-latex="\\frac{a}{b}"' in body["body_html"]
    published = curator_api.post(f"/api/v1/guide-versions/{draft_id}/publish/").json()
    assert published["status"] == "published" and published["published_at"]
    assert curator_api.get(f"/api/v1/guides/{guide['id']}/").json()["current_version"] == draft_id


def test_published_version_is_immutable(curator_api, published):
    response = curator_api.patch(f"/api/v1/guide-versions/{published.id}/", {"body_md": "sneaky edit"})
    assert response.status_code == 400 and "status" in response.json()
    assert curator_api.post(f"/api/v1/guide-versions/{published.id}/publish/").status_code == 400
    published.refresh_from_db()
    assert published.body_md.startswith("# Rules")


def test_only_one_draft_at_a_time(curator_api, published):
    first = curator_api.post("/api/v1/guide-versions/", {"guide": published.guide_id, "change_notes": "v2"})
    assert first.status_code == 201 and first.json()["number"] == 2
    assert first.json()["body_md"] == published.body_md  # starts from the latest text
    second = curator_api.post("/api/v1/guide-versions/", {"guide": published.guide_id})
    assert second.status_code == 400 and "guide" in second.json()


def test_annotator_sees_published_versions_only_and_cannot_write(annotator_api, published, curator):
    draft = services.guide_version_create(guide=published.guide, created_by=curator, body_md="draft text")
    ids = [v["id"] for v in annotator_api.get("/api/v1/guide-versions/").json()["results"]]
    assert ids == [published.id]
    assert annotator_api.get(f"/api/v1/guide-versions/{draft.id}/").status_code == 404
    assert annotator_api.patch(f"/api/v1/guide-versions/{published.id}/", {"body_md": "x"}).status_code == 403
    assert annotator_api.post("/api/v1/guide-versions/", {"guide": published.guide_id}).status_code == 403


def test_vendor_without_contract_does_not_see_the_guide(foreign_api, published):
    assert foreign_api.get("/api/v1/guides/").json()["results"] == []
    assert foreign_api.get(f"/api/v1/guide-versions/{published.id}/").status_code == 404


@pytest.mark.parametrize("payload,field", [
    ({"title": "x"}, "spec"),
    ({"spec": 999999, "title": "x"}, "spec"),
    ({"spec": "SPEC", "title": ""}, "title"),
])
def test_bad_guide_input_names_the_field(curator_api, spec, payload, field):
    payload = {k: (spec.id if v == "SPEC" else v) for k, v in payload.items()}
    response = curator_api.post("/api/v1/guides/", payload)
    assert response.status_code == 400 and field in response.json()


@pytest.mark.parametrize("payload,field", [
    ({"body_md": "x" * 200_001}, "body_md"),
    ({"change_notes": "x" * 20_001}, "change_notes"),
])
def test_guide_whose_first_version_is_refused_leaves_no_guide_behind(curator_api, spec, payload, field):
    from guides.models import Guide, GuideVersion

    response = curator_api.post("/api/v1/guides/", {"spec": spec.id, "title": "Rules", **payload})
    assert response.status_code == 400 and field in response.json()
    assert Guide.objects.count() == 0 and GuideVersion.objects.count() == 0
    # ... so the curator can simply try again.
    assert curator_api.post("/api/v1/guides/", {"spec": spec.id, "title": "Rules"}).status_code == 201


def test_second_guide_for_a_spec_is_refused(curator_api, published):
    response = curator_api.post("/api/v1/guides/", {"spec": published.guide.spec_id, "title": "again"})
    assert response.status_code == 400 and "spec" in response.json()


def test_publishing_an_empty_draft_is_refused(curator_api, spec):
    guide = _create_guide(curator_api, spec, body="")
    response = curator_api.post(f"/api/v1/guide-versions/{guide['draft_version']}/publish/")
    assert response.status_code == 400 and "body_md" in response.json()


def test_examples_carry_regions_drawn_on_the_overlay(curator_api, curator, contract, example_image, annotator_api):
    draft = factories.make_guide(spec=contract.spec, by=curator, publish=False)
    quad = [[10, 10], [190, 10], [190, 90], [10, 90]]
    response = curator_api.post("/api/v1/guide-examples/", {"version": draft.id, "image": example_image.id,
                                                             "kind": "bad", "caption": "too loose", "regions": [quad]})
    assert response.status_code == 201, response.content
    example = response.json()
    services.guide_version_publish(version=draft, by=curator)
    assert example["overlay_url"] == f"http://testserver/api/v1/guide-examples/{example['id']}/overlay/"  # absolute
    overlay = annotator_api.get(example["overlay_url"])
    assert overlay.status_code == 200 and overlay["Content-Type"] == "image/jpeg"
    img = PILImage.open(io.BytesIO(overlay.content)).convert("RGB")
    # The quad's left edge is drawn in red: the reddest pixel across it, as JPEG blurs the line's
    # centre by a few levels depending on what surrounds it (a lone pixel sat at the threshold).
    across = [img.getpixel((x, 50)) for x in range(7, 14)]
    assert max(r - max(g, b) for r, g, b in across) > 50, across
    assert all(r - max(g, b) < 40 for r, g, b in (img.getpixel((x, 50)) for x in (60, 100)))  # inside: not red
    # A published version's examples cannot be removed.
    assert curator_api.delete(f"/api/v1/guide-examples/{example['id']}/").status_code == 400


@pytest.mark.parametrize("regions,field", [
    ([[[0, 0], [10, 0], [10, 10]]], "regions"),           # three points
    ([[[0, 0], [10, 10], [10, 0], [0, 10]]], "regions"),  # self-crossing bow tie
    ([[[0, 0], [500, 0], [500, 10], [0, 10]]], "regions"),  # outside the image
    ("not a list", "regions"),
    ({}, "regions"),                                       # an object is not an empty list
    (0, "regions"),
    ([[[10**400, 0], [10, 0], [10, 10], [0, 10]]], "regions"),  # an integer beyond float range
    ([[[True, 10], [100, 10], [100, 50], [10, 50]]], "regions"),  # a boolean is not a coordinate
    ([[["10", 10], [100, 10], [100, 50], [10, 50]]], "regions"),  # nor a numeric string
])
def test_bad_example_regions_name_the_field(curator_api, curator, contract, example_image, regions, field):
    draft = factories.make_guide(spec=contract.spec, by=curator, publish=False)
    response = curator_api.post("/api/v1/guide-examples/", {"version": draft.id, "image": example_image.id,
                                                             "kind": "good", "regions": regions})
    assert response.status_code == 400 and field in response.json()
    assert draft.examples.count() == 0


def test_bad_example_region_error_says_which_region(curator_api, curator, contract, example_image):
    draft = factories.make_guide(spec=contract.spec, by=curator, publish=False)
    good, bad = [[10, 10], [100, 10], [100, 50], [10, 50]], [[10, 10], ["100", 10], [100, 50], [10, 50]]
    response = curator_api.post("/api/v1/guide-examples/", {"version": draft.id, "image": example_image.id,
                                                             "kind": "good", "regions": [good, bad]}, format="json")
    assert response.status_code == 400
    assert response.json()["regions"] == ["Region 2: Point 2 must hold two numbers."]
    assert draft.examples.count() == 0


def test_example_regions_keep_the_order_their_corners_were_given_in(curator, contract, example_image):
    draft = factories.make_guide(spec=contract.spec, by=curator, publish=False)
    counter_clockwise = [[10, 50], [100, 50], [100, 10], [10, 10]]
    example = services.guide_example_add(version=draft, image=example_image, kind="good", regions=[counter_clockwise])
    assert example.regions == [counter_clockwise]


def test_guide_version_patch_refuses_another_guide_and_changes_nothing(curator_api, curator, contract):
    draft = factories.make_guide(spec=contract.spec, by=curator, publish=False)
    other = factories.make_guide(spec=factories.make_spec(), by=curator, publish=False)
    before = (draft.guide_id, draft.body_md)
    response = curator_api.patch(f"/api/v1/guide-versions/{draft.id}/", {"guide": other.guide_id, "body_md": "moved"},
                                 format="json")
    assert response.status_code == 400 and response.json() == {"guide": ["This field cannot be changed."]}
    draft.refresh_from_db()
    assert (draft.guide_id, draft.body_md) == before
    # Sent back as stored, the guide is no change.
    response = curator_api.patch(f"/api/v1/guide-versions/{draft.id}/", {"guide": draft.guide_id, "body_md": "edited"},
                                 format="json")
    assert response.status_code == 200 and response.json()["body_md"] == "edited"


def test_example_image_of_another_spec_is_refused(curator_api, curator, contract):
    draft = factories.make_guide(spec=contract.spec, by=curator, publish=False)
    stranger = factories.make_image()
    response = curator_api.post("/api/v1/guide-examples/", {"version": draft.id, "image": stranger.id, "kind": "good"})
    assert response.status_code == 400 and "image" in response.json()


def test_examples_are_carried_into_the_next_version(curator, contract, example_image):
    draft = factories.make_guide(spec=contract.spec, by=curator, publish=False)
    services.guide_example_add(version=draft, image=example_image, kind="good", regions=[])
    services.guide_version_publish(version=draft, by=curator)
    v2 = services.guide_version_create(guide=draft.guide, created_by=curator)
    assert [(e.image_id, e.kind) for e in v2.examples.all()] == [(example_image.id, "good")]


def test_diff_between_versions_is_readable_and_sanitised(curator_api, published, curator):
    v2 = services.guide_version_create(guide=published.guide, created_by=curator,
                                       body_md="# Rules\n\nDraw one quad per line <script>x</script>.")
    response = curator_api.get(f"/api/v1/guide-versions/{v2.id}/diff/", {"against": published.id})
    assert response.status_code == 200
    data = response.json()
    assert (data["old_number"], data["new_number"]) == (1, 2)
    assert "<script>" not in data["html"] and "&lt;script&gt;" in data["html"]
    assert "-Draw one quad per formula: $x^2$." in data["unified"]
    assert "+Draw one quad per line <script>x</script>." in data["unified"]
    bad = curator_api.get(f"/api/v1/guide-versions/{v2.id}/diff/", {"against": "abc"})
    assert bad.status_code == 400 and "against" in bad.json()


def test_version_list_query_count_is_flat(curator_api, curator, django_assert_max_num_queries):
    for _ in range(4):
        v = factories.make_guide(by=curator)
        services.guide_version_create(guide=v.guide, created_by=curator)
    with django_assert_max_num_queries(12):
        response = curator_api.get("/api/v1/guide-versions/")
    assert response.json()["count"] == 8
    with django_assert_max_num_queries(8):
        assert curator_api.get("/api/v1/guides/").json()["count"] == 4


def test_version_numbers_are_per_guide(curator):
    a = factories.make_guide(by=curator)
    b = factories.make_guide(by=curator)
    assert (a.number, b.number) == (1, 1)
    assert GuideVersion.objects.filter(number=1).count() == 2


@pytest.mark.parametrize("body", [["guide"], "guide"])
def test_guide_version_patch_whose_body_is_not_an_object_is_a_400(curator_api, curator, contract, body):
    draft = factories.make_guide(spec=contract.spec, by=curator, publish=False)
    response = curator_api.patch(f"/api/v1/guide-versions/{draft.id}/", body, format="json")
    assert response.status_code == 400, response.content[:300]
