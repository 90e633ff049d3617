"""Two curators creating batches of one spec at the same moment never get the same
image twice (only_unlabeled): batch creation is serialised per spec on PostgreSQL."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection

from labeling import services
from labeling.models import Batch, Task
from tests import factories

pytestmark = [
    pytest.mark.postgres,
    # Real commits between threads; the catalogue and role rows of data migrations come back after each test.
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
                       reason="needs PostgreSQL (row locks, concurrent connections); SQLite serialises "
                              "writers anyway: set DATABASE_URL"),
]


def test_concurrent_batches_of_one_spec_get_disjoint_images(monkeypatch):
    spec = factories.make_spec()
    source = factories.make_source()
    images = [factories.make_image(spec=spec, source=source, data=factories.png_bytes(200, 100)) for _ in range(6)]
    vendors = [factories.make_vendor(), factories.make_vendor()]

    # Hold each call between choosing its images and writing its tasks until the other
    # one got there too (or 3 s passed): without a lock both choose before either writes,
    # every time; with it the second waits for the first to commit and the rendezvous
    # times out.
    meeting = threading.Barrier(2, timeout=3)
    full_clean = Batch.full_clean

    def wait_then_clean(self, *args, **kwargs):
        try:
            meeting.wait()
        except threading.BrokenBarrierError:
            pass
        return full_clean(self, *args, **kwargs)

    monkeypatch.setattr(Batch, "full_clean", wait_then_clean)
    start = threading.Barrier(2)
    results: list = [None, None]

    def create(i: int) -> None:
        try:
            start.wait()
            results[i] = services.batch_create(spec=spec, vendor=vendors[i], name=f"B{i}", unit_price=Decimal("0.25"),
                                               quantity=4, only_unlabeled=True)
        except Exception as exc:  # reported by the test
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert not [r for r in results if isinstance(r, Exception)], results
    picked = [set(Task.objects.filter(batch=b).values_list("image_id", flat=True)) for b in results]
    assert not picked[0] & picked[1], "both batches got the same images"
    assert sorted(len(p) for p in picked) == [2, 4]
    assert picked[0] | picked[1] == {im.id for im in images}
    assert sorted(b.agreed_quantity for b in results) == [2, 4]
