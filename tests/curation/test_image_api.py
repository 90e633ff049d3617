"""/api/v1/images/: listing, filters, scoping, near-duplicates, updates and deletion."""
import io

import pytest
from PIL import Image as PILImage

from curation.models import Image
from tests.conftest import stored_files
from tests.factories import make_image, make_source, make_spec, png_bytes

pytestmark = pytest.mark.django_db


def test_filters_by_spec_category_source_and_licence(curator_api, spec, source):
    other_source = make_source("cc0-1.0")
    a = make_image(spec=spec, source=source, categories=["handwritten"])
    b = make_image(spec=spec, source=other_source, categories=["printed"])
    make_image(spec=make_spec(), source=source)

    def ids(query):
        return {row["id"] for row in curator_api.get(f"/api/v1/images/?{query}").json()["results"]}

    assert ids(f"spec={spec.id}") == {a.id, b.id}
    assert ids(f"spec={spec.id}&category=handwritten") == {a.id}
    assert ids(f"spec={spec.id}&source={other_source.id}") == {b.id}
    assert ids(f"spec={spec.id}&licence=cc0-1.0") == {b.id}


def test_list_query_count_does_not_grow_with_rows(curator_api, spec, source, django_assert_max_num_queries):
    for _ in range(3):
        make_image(spec=spec, source=source, categories=["printed", "shadow"])
    with django_assert_max_num_queries(10) as ctx:
        curator_api.get("/api/v1/images/")
    for _ in range(12):
        make_image(spec=spec, source=source, categories=["printed", "shadow"])
    with django_assert_max_num_queries(len(ctx.captured_queries)):
        assert curator_api.get("/api/v1/images/").json()["count"] == 15


def test_truth_latex_is_hidden_from_model_team(api, curator, model_team, spec, source):
    image = make_image(spec=spec, source=source, truth_latex="x^2")
    api.force_authenticate(curator)
    assert api.get(f"/api/v1/images/{image.id}/").json()["truth_latex"] == "x^2"
    api.force_authenticate(model_team)
    assert api.get(f"/api/v1/images/{image.id}/").json()["truth_latex"] is None


def test_vendor_user_without_work_sees_no_image(api, annotator, spec, source):
    image = make_image(spec=spec, source=source)
    api.force_authenticate(annotator)
    assert api.get("/api/v1/images/").json()["count"] == 0
    assert api.get(f"/api/v1/images/{image.id}/").status_code == 404
    assert api.get(f"/api/v1/images/{image.id}/file/").status_code == 404


def test_file_endpoint_serves_the_stored_bytes(curator_api, spec, source):
    data = png_bytes(90, 40)
    image = make_image(spec=spec, source=source, data=data)
    r = curator_api.get(f"/api/v1/images/{image.id}/file/")
    assert r.status_code == 200 and r["Content-Type"] == "image/png"
    assert b"".join(r.streaming_content) == data


def test_near_duplicates_finds_a_resized_copy(curator_api, spec, source):
    original = png_bytes(400, 200, seed=5)
    resized = io.BytesIO()
    PILImage.open(io.BytesIO(original)).resize((380, 190)).save(resized, "JPEG", quality=90)
    a = make_image(spec=spec, source=source, data=original)
    b = make_image(spec=spec, source=source, data=resized.getvalue(), filename="copy.jpg")
    unrelated = PILImage.new("RGB", (400, 200), "white")
    for x in range(0, 400, 20):
        unrelated.paste((0, 0, 0), (x, 0, x + 10, 200))
    buf = io.BytesIO()
    unrelated.save(buf, "PNG")
    c = make_image(spec=spec, source=source, data=buf.getvalue())
    found = curator_api.get(f"/api/v1/images/{a.id}/near-duplicates/?max_distance=10").json()
    assert [row["image"]["id"] for row in found] == [b.id]
    assert c.id not in [row["image"]["id"] for row in found]
    assert curator_api.get(f"/api/v1/images/{a.id}/near-duplicates/?max_distance=x").status_code == 400


def test_update_categories_and_capture_session(curator_api, spec, source):
    image = make_image(spec=spec, source=source)
    r = curator_api.patch(f"/api/v1/images/{image.id}/", {"categories": ["shadow", "whiteout"],
                                                          "capture_session": "s1"}, format="json")
    assert r.status_code == 200 and sorted(r.json()["categories"]) == ["shadow", "whiteout"]
    r = curator_api.patch(f"/api/v1/images/{image.id}/", {"categories": ["nope"]}, format="json")
    assert r.status_code == 400 and "nope" in r.json()["categories"][0]


def test_image_patch_refuses_another_spec_or_source_and_keeps_the_image(curator_api, spec, source):
    image = make_image(spec=spec, source=source)
    other_spec, other_source = make_spec(), make_source()
    for change, field in [({"spec": other_spec.id}, "spec"), ({"source": other_source.id}, "source")]:
        r = curator_api.patch(f"/api/v1/images/{image.id}/", {**change, "capture_session": "s2"}, format="json")
        assert r.status_code == 400 and r.json() == {field: ["This field cannot be changed."]}, r.content
    image.refresh_from_db()
    assert (image.spec_id, image.source_id, image.capture_session) == (spec.id, source.id, "")
    # The stored values sent back unchanged are no change.
    r = curator_api.patch(f"/api/v1/images/{image.id}/", {"spec": spec.id, "source": source.id,
                                                          "capture_session": "s2"}, format="json")
    assert r.status_code == 200 and r.json()["capture_session"] == "s2"


def test_delete_removes_row_and_files(curator_api, spec, source, django_capture_on_commit_callbacks):
    image = make_image(spec=spec, source=source)
    assert len(stored_files()) == 2
    with django_capture_on_commit_callbacks(execute=True):
        assert curator_api.delete(f"/api/v1/images/{image.id}/").status_code == 204
    assert not Image.objects.exists() and stored_files() == []


def test_unauthenticated_requests_are_refused(api):
    assert api.get("/api/v1/images/").status_code in (401, 403)


def test_token_authentication(api, curator, spec, source):
    from common.services import api_token_rotate

    token = api_token_rotate(user=curator)
    make_image(spec=spec, source=source)
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.get("/api/v1/images/").json()["count"] == 1
    api.credentials(HTTP_AUTHORIZATION="Token wrong")
    assert api.get("/api/v1/images/").status_code == 401
