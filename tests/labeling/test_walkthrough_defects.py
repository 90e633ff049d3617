"""Two defects a walk-through of the pages found: the "Sent back to you" list of My work had
no bound (an annotator with hundreds of rejections got them all on one page), and the vendor
form's duplicate-name error also named a field the form does not show ("slug: …")."""
from __future__ import annotations

import pytest
from django.test import Client

from common import roles
from labeling import services
from labeling.models import Batch, Vendor
from tests import factories
from tests.factories import quad
from tests.pages import field_errors, text

pytestmark = pytest.mark.django_db


def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _rejected(vendor, spec, annotator, n: int) -> list:
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    batch = factories.make_batch(spec, vendor, images=n)
    out = []
    for _ in range(n):  # all handed in first: rework sent back would be the next task handed out
        task = services.task_claim_next(annotator=annotator).task
        out.append(services.annotation_create(task=task, annotator=annotator, submit=True, regions=[quad()]))
    for annotation in out:
        services.review_create(annotation=annotation, reviewer=reviewer, decision="reject", reasons=["other"],
                               comment=f"fix {annotation.task_id}")
    return batch, out


def test_sent_back_to_you_is_paged_with_the_total_and_a_link_to_the_rest(vendor, spec, annotator, monkeypatch):
    from labeling import views

    monkeypatch.setattr(views, "REWORK_PER_PAGE", 2)
    batch, rejected = _rejected(vendor, spec, annotator, 5)
    client = page_client(annotator)
    first = client.get("/work/")
    html = first.content.decode()
    assert html.count('class="rejected-row"') == 2
    assert "Page 1 of 3 (5 sent back)" in text(first)
    assert 'href="?rework_page=2#rej-h"' in html
    assert 'aria-label="5 to fix"' in html or ">5</span>" in html  # the badge counts them all, not one page
    last = client.get("/work/", {"rework_page": 3})
    assert last.content.decode().count('class="rejected-row"') == 1
    assert "Page 3 of 3 (5 sent back)" in text(last)
    # every one shows up exactly once over the pages
    seen = set()
    for n in (1, 2, 3):
        page = client.get("/work/", {"rework_page": n}).content.decode()
        seen |= {a.task_id for a in rejected if f"<td>#{a.task_id}</td>" in page}
    assert seen == {a.task_id for a in rejected}
    # a page number out of range or unreadable shows the nearest page instead of failing
    assert client.get("/work/", {"rework_page": "x"}).status_code == 200
    assert client.get("/work/", {"rework_page": 99}).content.decode().count('class="rejected-row"') == 1


def test_the_rework_badge_counts_open_rework_over_every_page(vendor, spec, annotator, monkeypatch):
    from labeling import views

    monkeypatch.setattr(views, "REWORK_PER_PAGE", 1)
    batch, _ = _rejected(vendor, spec, annotator, 3)
    html = page_client(annotator).get("/work/").content.decode()
    assert '<span class="badge bad">3</span>' in html
    services.batch_update(batch=Batch.objects.get(pk=batch.pk), status=Batch.Status.CLOSED)
    html = page_client(annotator).get("/work/").content.decode()
    assert '<span class="badge bad">' not in html  # closed: nothing to fix
    assert "is closed: no rework" in html


def test_a_short_rework_list_has_no_pager(vendor, spec, annotator):
    _rejected(vendor, spec, annotator, 2)
    r = page_client(annotator).get("/work/")
    assert r.content.decode().count('class="rejected-row"') == 2 and "rework_page" not in r.content.decode()


@pytest.mark.parametrize("name", ["Acme Labeling", "acme labeling", "ACME  Labeling!"])
def test_a_vendor_name_clash_reads_as_a_name_error_only(curator, name):
    services.vendor_create(name="Acme Labeling")
    r = page_client(curator).post("/people/vendors/", {"name": name, "contact_email": ""})
    assert r.status_code == 400
    assert field_errors(r, "id_name") == "A vendor with this name already exists."
    page = text(r).lower()
    assert "slug:" not in page and "with this slug" not in page  # no error names a field not on the form
    assert Vendor.objects.count() == 1


def test_a_new_vendor_name_is_still_created(curator):
    r = page_client(curator).post("/people/vendors/", {"name": "Fresh Labels", "contact_email": ""})
    assert r.status_code == 302 and Vendor.objects.filter(name="Fresh Labels").exists()
