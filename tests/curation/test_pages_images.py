"""Image browser, image detail, upload page and import jobs page."""
from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from curation.models import Image, ImportJob
from tests import factories
from tests.pages import text

pytestmark = pytest.mark.django_db


@pytest.fixture
def gallery(spec, source):
    """Two specs, two sources; truth on one image; categories spread over kinds."""
    other_source = factories.make_source("cc0-1.0", name="Scans")
    other_spec = factories.make_spec(name="Other spec")
    images = {
        "p1": factories.make_image(spec=spec, source=source, categories=["printed"], filename="p1.png"),
        "p2": factories.make_image(spec=spec, source=source, categories=["printed", "shadow"], filename="p2.png"),
        "h1": factories.make_image(spec=spec, source=other_source, categories=["handwritten"], filename="h1.png",
                                   truth_latex="x^2"),
        "o1": factories.make_image(spec=other_spec, source=other_source, categories=["printed"], filename="o1.png"),
    }
    return images


def shown(response) -> list[str]:
    """File names of the thumbnails on a browser page, in order."""
    return re.findall(r'alt="Thumbnail of ([^"]+)"', response.content.decode())


def test_browser_shows_thumbnails_and_count(client, curator, gallery):
    client.force_login(curator)
    r = client.get("/images/")
    assert r.status_code == 200
    assert shown(r) == ["o1.png", "h1.png", "p2.png", "p1.png"]
    assert "4 found" in text(r)
    assert f'src="/api/v1/images/{gallery["p1"].pk}/thumbnail/"' in r.content.decode()


@pytest.mark.parametrize(("query", "expected"), [
    ("spec={spec}", ["h1.png", "p2.png", "p1.png"]),
    ("spec={spec}&category={printed}", ["p2.png", "p1.png"]),
    ("category=shadow", ["p2.png"]),
    ("category=printed", ["o1.png", "p2.png", "p1.png"]),
    ("source={source}", ["p2.png", "p1.png"]),
    ("licence=cc0-1.0", ["o1.png", "h1.png"]),
    ("has_truth=true", ["h1.png"]),
    ("has_truth=false&spec={spec}", ["p2.png", "p1.png"]),
])
def test_browser_filters(client, curator, gallery, spec, source, query, expected):
    client.force_login(curator)
    printed = spec.categories.get(slug="printed").pk
    r = client.get("/images/?" + query.format(spec=spec.pk, printed=printed, source=source.pk))
    assert shown(r) == expected
    assert f"{len(expected)} found" in text(r)


@pytest.mark.parametrize("query,marked,expected", [
    # a slug chosen before the spec, when the menu listed slugs; with a spec it lists ids
    ("spec={spec}&category=printed", "{printed}", ["p2.png", "p1.png"]),
    ("spec={spec}&category={printed}", "{printed}", ["p2.png", "p1.png"]),  # the spec page's links
    ("category={printed}", "printed", ["p2.png", "p1.png"]),                # an id without a spec
    ("category=printed", "printed", ["o1.png", "p2.png", "p1.png"]),
])
def test_browser_category_menu_shows_the_category_filtered_on(client, curator, gallery, spec, query, marked,
                                                              expected):
    # The menu marked an option only when the address named the category the way the menu did:
    # "?spec=1&category=printed" listed only printed images under "Any category".
    client.force_login(curator)
    printed = spec.categories.get(slug="printed").pk
    r = client.get("/images/?" + query.format(spec=spec.pk, printed=printed))
    assert shown(r) == expected
    menu = re.search(r'<select id="f-category".*?</select>', r.content.decode(), re.S).group(0)
    assert re.findall(r'<option value="([^"]*)" selected>', menu) == [marked.format(printed=printed)]


def test_browser_paginates_with_limit_and_offset(client, curator, gallery):
    client.force_login(curator)
    r = client.get("/images/?limit=3")
    assert shown(r) == ["o1.png", "h1.png", "p2.png"]
    assert "1–3 of 4" in text(r)
    assert "offset=3" in r.content.decode()
    r = client.get("/images/?limit=3&offset=3")
    assert shown(r) == ["p1.png"] and "4–4 of 4" in text(r) and "Previous" in text(r)


def test_browser_bad_filter_value_is_reported(client, curator, gallery):
    client.force_login(curator)
    r = client.get("/images/?spec=abc")
    assert r.status_code == 200
    assert "spec: Enter a number." in text(r)
    # and nothing is listed, as if the filter had been applied (it used to list every image)
    assert "0 found" in text(r) and 'class="thumb' not in r.content.decode()


def test_browser_query_count_does_not_grow_with_images(client, curator, spec, source, django_assert_max_num_queries):
    client.force_login(curator)
    factories.make_image(spec=spec, source=source)
    with django_assert_max_num_queries(15) as few:
        client.get(f"/images/?spec={spec.pk}")
    for _ in range(25):
        factories.make_image(spec=spec, source=factories.make_source(), categories=["printed", "shadow"])
    with django_assert_max_num_queries(len(few.captured_queries)):
        r = client.get(f"/images/?spec={spec.pk}")
    assert len(shown(r)) == 26


def test_thumbnail_and_file_are_served_to_a_signed_in_curator(client, curator, gallery):
    client.force_login(curator)
    image = gallery["p1"]
    thumb = client.get(image.thumbnail_url)
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/jpeg"
    assert client.get(image.file_url)["Content-Type"] == "image/png"


def test_model_team_browses_but_vendor_users_are_refused(client, model_team, annotator, gallery):
    client.force_login(model_team)
    assert len(shown(client.get("/images/"))) == 4
    image = gallery["h1"]
    r = client.get(f"/images/{image.pk}/")
    assert r.status_code == 200 and "Save categories" not in text(r) and "x^2" not in text(r)
    assert client.post(f"/images/{image.pk}/", {"categories": []}).status_code == 403
    client.force_login(annotator)
    assert client.get("/images/").status_code == 403
    assert client.get(f"/images/{image.pk}/").status_code == 403


def test_detail_shows_metadata_provenance_and_licence(client, curator, gallery, source):
    client.force_login(curator)
    image = gallery["h1"]
    r = client.get(f"/images/{image.pk}/")
    page = text(r)
    assert f"Size {image.width} × {image.height} px, PNG" in page
    assert image.sha256 in page and "Truth LaTeX x^2" in page
    assert "Scans (Public dataset)" in page and "commercial ok" in page
    assert f'src="/api/v1/images/{image.pk}/file/"' in r.content.decode()
    assert "Attribution" in page


def test_detail_edits_categories_through_the_service(client, curator, gallery, spec):
    client.force_login(curator)
    image = gallery["p1"]
    ids = [spec.categories.get(slug=s).pk for s in ("handwritten", "whiteout")]
    r = client.post(f"/images/{image.pk}/", {"categories": ids})
    assert r.status_code == 302
    assert sorted(image.categories.values_list("slug", flat=True)) == ["handwritten", "whiteout"]
    foreign = factories.make_spec().categories.first()
    r = client.post(f"/images/{image.pk}/", {"categories": [foreign.pk]}, follow=True)
    assert "Unknown category" in text(r)
    assert sorted(image.categories.values_list("slug", flat=True)) == ["handwritten", "whiteout"]


def test_detail_lists_near_duplicates(client, curator, spec, source):
    original = factories.make_image(spec=spec, source=source, data=factories.png_bytes(400, 200, seed=5),
                                    filename="orig.png")
    recompressed = factories.make_image(spec=spec, source=source,
                                        data=factories.png_bytes(400, 200, seed=5, fmt="JPEG", quality=70),
                                        filename="copy.jpg")
    factories.make_image(spec=spec, source=source, data=factories.png_bytes(400, 200, seed=77), filename="else.png")
    client.force_login(curator)
    r = client.get(f"/images/{original.pk}/")
    assert f'/images/{recompressed.pk}/"' in r.content.decode()
    assert re.findall(r'alt="Thumbnail of ([^"]+)"', r.content.decode()) == ["copy.jpg"]


def test_unknown_image_is_404(client, curator):
    client.force_login(curator)
    assert client.get("/images/424242/").status_code == 404


def test_upload_page_renders_choices_and_config(client, curator, spec, source):
    closed = factories.make_spec(name="Closed one", status="closed")
    client.force_login(curator)
    r = client.get(f"/upload/?spec={spec.pk}")
    assert r.status_code == 200
    html = r.content.decode()
    assert f'<option value="{spec.pk}" selected>' in html and closed.name not in html
    config = json.loads(re.search(r'<script id="upload-config" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert config["bulkUrl"] == "/api/v1/images/bulk/" and config["chunkSize"] == 20
    assert [c["slug"] for c in config["categories"][str(spec.pk)]][:2] == ["printed", "handwritten"]
    assert config["sources"][str(source.pk)]["commercial"] is True
    assert 'src="/static/js/upload.js"' in html


def test_upload_page_csrf_token_authorises_the_bulk_api_with_the_session(curator, spec, source):
    """What the page's JavaScript does: session cookie + X-CSRFToken from the page."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(curator)
    html = client.get("/upload/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    files = [SimpleUploadedFile(f"f{i}.png", factories.png_bytes(seed=900 + i)) for i in range(3)]
    payload = {"spec": spec.pk, "source": source.pk, "categories": ["printed"], "files": files}
    assert client.post("/api/v1/images/bulk/", payload).status_code == 403  # no token, no write
    r = client.post("/api/v1/images/bulk/", payload | {"files": [SimpleUploadedFile(f.name, factories.png_bytes(seed=900 + i))
                                                                   for i, f in enumerate(files)]},
                    HTTP_X_CSRFTOKEN=token)
    assert r.status_code == 201, r.content
    assert sorted(im["original_filename"] for im in r.json()["created"]) == ["f0.png", "f1.png", "f2.png"]
    assert Image.objects.filter(spec=spec).count() == 3


@pytest.mark.parametrize("url", ["/upload/", "/imports/"])
def test_upload_and_import_pages_are_for_curators(client, annotator, model_team, url):
    for user in (annotator, model_team):
        client.force_login(user)
        assert client.get(url).status_code == 403


def test_import_jobs_page_lists_jobs_with_counts_and_errors(client, curator, spec, source,
                                                             django_capture_on_commit_callbacks):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.png", factories.png_bytes(seed=1001))
        zf.writestr("b.png", factories.png_bytes(seed=1002))
        zf.writestr("broken.png", b"not an image")
    client.force_login(curator)
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post("/api/v1/import-jobs/", {"spec": spec.pk, "source": source.pk,
                                                 "archive": SimpleUploadedFile("batch.zip", buf.getvalue())})
    assert r.status_code == 201, r.content
    job = ImportJob.objects.get()
    assert job.status == "done"
    page = text(client.get("/imports/"))
    assert f"{job.pk} {spec.name} {source.name} Done 3 2 0 1 error" in page
    assert "broken.png: not an image" in page
    assert "Done 3 2 0" in text(client.get("/upload/"))
    assert "Done 3 2 0" not in text(client.get("/imports/?status=failed"))


@pytest.mark.parametrize("category", ["²", "٣", "99999999999999999999"])
def test_browser_and_api_treat_a_category_that_is_no_id_or_slug_as_matching_nothing(client, curator, gallery,
                                                                                   category):
    # "²".isdigit() is true, int("²") a ValueError: the page and the API answered 500.
    client.force_login(curator)
    r = client.get("/images/", {"category": category})
    assert r.status_code == 200 and shown(r) == []
    r = client.get("/api/v1/images/", {"category": category})
    assert r.status_code == 200 and r.json()["count"] == 0
