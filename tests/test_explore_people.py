"""Found by an exploratory pass over the pages: the curators' Users page listed every user on
one page, each row with up to three forms; a vendor's annotators run into the hundreds."""
from __future__ import annotations

import re

import pytest

from common import roles, views
from tests import factories

pytestmark = pytest.mark.django_db


def usernames(html: str) -> list[str]:
    return re.findall(r"<td>(explore-\d+)", html)


def test_users_page_is_paged(client, curator, monkeypatch):
    monkeypatch.setattr(views, "USERS_PER_PAGE", 5)
    vendor = factories.make_vendor()
    for i in range(8):
        factories.make_user(roles.ANNOTATOR, vendor=vendor, username=f"explore-{i:02d}")
    client.force_login(curator)
    first = client.get("/people/").content.decode()
    assert 'aria-label="Pages of users"' in first and 'href="/people/?page=2"' in first
    second = client.get("/people/?page=2").content.decode()
    shown = usernames(first) + usernames(second)
    assert sorted(shown) == [f"explore-{i:02d}" for i in range(8)]  # every user once, on one page or the other
    assert len(usernames(first)) <= 5
    assert 'href="/people/?page=1"' in second
    assert client.get("/people/?page=999").status_code == 200  # past the end: the last page


def test_a_refused_user_keeps_the_list_paged(client, curator, monkeypatch):
    monkeypatch.setattr(views, "USERS_PER_PAGE", 2)
    for i in range(3):
        factories.make_user(roles.ANNOTATOR, username=f"explore-{i:02d}")
    client.force_login(curator)
    r = client.post("/people/", {"username": "explore-00", "password": "Long-enough-9", "role": roles.ANNOTATOR})
    assert r.status_code == 400
    html = r.content.decode()
    assert 'value="explore-00"' in html and 'aria-label="Pages of users"' in html
