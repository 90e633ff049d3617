"""Near-duplicates of an image: on PostgreSQL computed, filtered, ordered and limited in SQL (no
hash of the spec read into Python); on SQLite in Python. Both give the same answer."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from curation import selectors
from curation.imaging import hamming
from curation.models import Image
from tests import factories

pytestmark = [pytest.mark.django_db,
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

BASE = "f0e1d2c3b4a59687"   # high bit set: a signed 64-bit reading would go wrong


def _flip(h: str, bits: int) -> str:
    return f"{int(h, 16) ^ ((1 << bits) - 1) << 60 - bits:016x}" if bits else h


@pytest.fixture
def world(curator):
    spec, other = factories.make_spec(), factories.make_spec()
    source = factories.make_source()
    made = []
    # distances 0, 1, 3, 8, 8, 9, 20, 64 from BASE, then one taken down and one in another spec
    for k, bits in enumerate([0, 1, 3, 8, 8, 9, 20, 64]):
        im = factories.make_image(spec=spec, source=source, data=factories.png_bytes(20 + k, 10))
        ph = _flip(BASE, bits) if bits < 64 else f"{int(BASE, 16) ^ (2**64 - 1):016x}"
        Image.objects.filter(pk=im.pk).update(phash=ph)
        made.append(im.pk)
    gone = factories.make_image(spec=spec, source=source, data=factories.png_bytes(40, 10))
    Image.objects.filter(pk=gone.pk).update(phash=_flip(BASE, 1), taken_down_at=timezone.now())
    elsewhere = factories.make_image(spec=other, source=source, data=factories.png_bytes(41, 10))
    Image.objects.filter(pk=elsewhere.pk).update(phash=BASE)
    target = factories.make_image(spec=spec, source=source, data=factories.png_bytes(42, 10))
    Image.objects.filter(pk=target.pk).update(phash=BASE)
    return {"target": Image.objects.get(pk=target.pk), "made": made, "gone": gone.pk, "elsewhere": elsewhere.pk}


def _expected(image, max_distance, limit):
    rows = Image.objects.filter(spec_id=image.spec_id, taken_down_at__isnull=True).exclude(pk=image.pk)
    near = sorted((hamming(image.phash, im.phash), im.pk) for im in rows)
    return [(pk, d) for d, pk in near if d <= max_distance][:limit]


@pytest.mark.parametrize("max_distance,limit", [(8, 50), (0, 50), (9, 3), (64, 50), (8, 1)])
def test_near_duplicates_are_those_within_the_threshold_closest_first(world, curator, max_distance, limit):
    image = world["target"]
    got = selectors.images_near_duplicates(user=curator, image=image, max_distance=max_distance, limit=limit)
    assert [(im.pk, d) for im, d in got] == _expected(image, max_distance, limit)
    ids = {im.pk for im, _ in got}
    assert world["gone"] not in ids and world["elsewhere"] not in ids


def test_default_threshold_is_eight_bits(world, curator):
    got = selectors.images_near_duplicates(user=curator, image=world["target"])
    assert [d for _, d in got] == [0, 1, 3, 8, 8]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the SQL path runs on PostgreSQL")
def test_on_postgresql_the_hashes_are_compared_in_sql(world, curator):
    with CaptureQueriesContext(connection) as ctx:
        got = selectors.images_near_duplicates(user=curator, image=world["target"], limit=2)
    assert len(got) == 2
    main = [q["sql"] for q in ctx.captured_queries if "bit(64)" in q["sql"]]
    assert len(main) == 1 and "LIMIT 2" in main[0]
    # No query reads the spec's hashes without the distance filter (the Python scan did).
    assert not any('"phash"' in q["sql"] and "bit(64)" not in q["sql"] and "LIMIT" not in q["sql"]
                   for q in ctx.captured_queries)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the SQL path runs on PostgreSQL")
def test_sql_distance_equals_python_hamming_on_random_hashes(curator):
    import random

    from django.db.models import F, Value

    from curation.selectors import PhashDistance

    spec = factories.make_spec()
    im = factories.make_image(spec=spec)
    rng = random.Random(3)
    pairs = [(f"{rng.getrandbits(64):016x}", f"{rng.getrandbits(64):016x}") for _ in range(200)]
    pairs += [("0" * 16, "f" * 16), ("8000000000000000", "7fffffffffffffff"), ("0000000000000abc", "abc")]
    for a, b in pairs:
        Image.objects.filter(pk=im.pk).update(phash=a)
        d = Image.objects.filter(pk=im.pk).annotate(d=PhashDistance(F("phash"), Value(b))).values_list("d", flat=True)
        assert d.get() == hamming(a, b), (a, b)


def test_image_page_and_api_list_the_same_near_duplicates(world, curator, curator_api, client):
    image = world["target"]
    r = curator_api.get(f"/api/v1/images/{image.pk}/near-duplicates/")
    assert r.status_code == 200
    assert [(x["image"]["id"], x["distance"]) for x in r.json()] == _expected(image, 8, 50)
    client.force_login(curator)
    assert client.get(f"/images/{image.pk}/").status_code == 200
