"""Limit/offset pages are read in a total order (the list's ordering, then the id), so an offset walk
over rows tied on the ordering neither repeats nor misses one. Without it PostgreSQL's top-N sort
ordered the ties differently for each page's LIMIT/OFFSET, and a model team walking
`?ordering=created_at` over a bulk import got some images twice and others never."""
from __future__ import annotations

import datetime as dt

import pytest

from curation.models import Image
from labeling.models import Batch
from tests import factories

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


def _offset_walk(client, url: str, limit: int) -> list[int]:
    seen: list[int] = []
    url = f"{url}&limit={limit}"
    while url:
        body = client.get(url).json()
        seen += [r["id"] for r in body["results"]]
        url = body["next"]
    return seen


def test_an_offset_walk_over_tied_rows_gives_each_row_once_in_id_order(curator_api, spec, source):
    made = [factories.make_image(spec=spec, source=source, data=factories.png_bytes(20 + i, 10)) for i in range(60)]
    Image.objects.filter(pk__in=[m.pk for m in made]).update(created_at=T0, width=7)  # all tied
    for ordering, expected in (("created_at", sorted(m.pk for m in made)),
                               ("-created_at", sorted((m.pk for m in made), reverse=True)),
                               ("width", sorted(m.pk for m in made))):
        for limit in (7, 13):
            assert _offset_walk(curator_api, f"/api/v1/images/?ordering={ordering}", limit) == expected, (
                ordering, limit)


def test_batches_are_listed_newest_first_by_offset_despite_their_task_counts(curator_api, spec):
    vendor = factories.make_vendor()
    made = [factories.make_batch(spec, vendor, images=1) for _ in range(9)]
    Batch.objects.filter(pk__in=[b.pk for b in made[:5]]).update(created_at=T0)
    Batch.objects.filter(pk__in=[b.pk for b in made[5:]]).update(created_at=T0 + dt.timedelta(days=1))
    expected = [b.pk for b in sorted(made, key=lambda b: (b.pk not in [m.pk for m in made[5:]], -b.pk))]
    assert _offset_walk(curator_api, "/api/v1/batches/?x=1", 2) == expected
