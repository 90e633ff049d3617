"""Final read of the thirty-second session's change (e5e6e43..HEAD): defects found, each with the
test that failed before its fix.

1. A contract's prices reach its vendor's batches of the spec (guides.services, by a queryset
   update), bypassing `labeling.services.batch_update`: the batch's price changed and its history,
   which claims every change of what a vendor is paid, said nothing (the next recorded change then
   started from a price no event had set).
2. POST /api/v1/images/ with a file part over the limit under a field other than `file` answered a
   400 naming `files[0]`, a field of the bulk endpoint that the request did not send.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from common import roles
from curation.models import Image
from guides import services as guide_services
from labeling import services
from labeling.models import Batch, BatchEvent
from tests import factories
from tests.conftest import stored_files
from tests.factories import png_bytes
from tests.labeling.conftest import client_for
from tests.pg_threads import backend_pid, start_thread, waiting_on_a_lock

pytestmark = pytest.mark.django_db


def _events(batch) -> list[tuple]:
    return [(e.kind, e.by, e.changes, bool(e.reason))
            for e in BatchEvent.objects.filter(batch=batch).order_by("at", "id")]


# ---------------------------------------------------------------- 1. contract prices and batch history


def test_a_contract_made_for_a_batchs_vendor_and_spec_records_the_new_price_in_its_history(spec, vendor, curator):
    batch = factories.make_batch(spec, vendor, images=1, created_by=curator, unit_price=Decimal("0.25"))
    other_kind = factories.make_batch(spec, vendor, images=1, kind="latex", unit_price=Decimal("0.25"))
    same_price = factories.make_batch(spec, vendor, images=1, kind="regions", unit_price=Decimal("0.10"))
    factories.make_contract(vendor=vendor, spec=spec, price_full=Decimal("0.40"), price_latex=Decimal("0.25"),
                            price_regions=Decimal("0.10"), currency="EUR", created_by=curator)
    assert Batch.objects.get(pk=batch.pk).unit_price == Decimal("0.40")
    *_, last = _events(batch)
    assert last == ("changed", curator, {"unit_price": ["0.2500", "0.4000"], "currency": ["USD", "EUR"]}, True)
    # the latex batch's price is the contract's already: only its currency changed
    assert _events(other_kind)[-1][2] == {"currency": ["USD", "EUR"]}
    assert _events(same_price)[-1][2] == {"currency": ["USD", "EUR"]}


def test_a_contracts_price_change_is_recorded_by_who_made_it_and_only_where_it_changed_a_price(spec, vendor,
                                                                                               curator):
    contract = factories.make_contract(vendor=vendor, spec=spec, price_full=Decimal("0.40"), created_by=curator)
    batch = factories.make_batch(spec, vendor, images=1, created_by=curator)
    latex = factories.make_batch(spec, vendor, images=1, kind="latex")
    other = factories.make_user(roles.CURATOR)
    guide_services.contract_update(contract=contract, price_full=Decimal("0.45"), by=other)
    assert _events(batch)[-1] == ("changed", other, {"unit_price": ["0.4000", "0.4500"]}, True)
    assert [kind for kind, *_ in _events(latex)] == ["created"]      # its kind's price did not change
    guide_services.contract_update(contract=contract, notes="no price here", by=other)
    assert len(_events(batch)) == 2


def test_the_api_records_who_changed_the_contract(spec, vendor, curator, curator_api):
    contract = factories.make_contract(vendor=vendor, spec=spec, price_full=Decimal("0.40"))
    batch = factories.make_batch(spec, vendor, images=1)
    r = curator_api.patch(f"/api/v1/contracts/{contract.pk}/", {"price_full": "0.5"}, format="json")
    assert r.status_code == 200, r.content
    assert _events(batch)[-1][:3] == ("changed", curator, {"unit_price": ["0.4000", "0.5000"]})
    # a vendor's annotator sees no price: the price-only change is not listed to them
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    r = client_for(annotator).get(f"/api/v1/batches/{batch.pk}/history/")
    assert [e["kind"] for e in r.json()["results"]] == ["created"]


def test_after_a_contract_the_next_batch_change_starts_from_the_contracts_price(spec, vendor, curator):
    batch = factories.make_batch(spec, vendor, images=1, created_by=curator, unit_price=Decimal("0.25"))
    factories.make_contract(vendor=vendor, spec=spec, price_full=Decimal("0.40"), created_by=curator)
    services.batch_update(batch=Batch.objects.get(pk=batch.pk), by=curator, deadline=dt.date(2027, 1, 1))
    # each event's old price is the new price of the one before it: no unexplained jump
    prices = [e.changes["unit_price"] for e in BatchEvent.objects.filter(batch=batch).order_by("at", "id")
              if "unit_price" in e.changes]
    assert [p[0] for p in prices[1:]] == [p[1] for p in prices[:-1]]
    assert prices[-1][1] == "0.4000"


# ---------------------------------------------------------------- 2. the image upload names the field sent


def test_a_single_image_upload_names_the_field_its_oversized_part_came_in(curator_api, spec, source, settings):
    settings.MATHSET_MAX_UPLOAD_BYTES = 100_000
    curator_api.raise_request_exception = False
    r = curator_api.post("/api/v1/images/", {"spec": spec.id, "source": source.id,
                                             "attachment": SimpleUploadedFile("j.bin", b"\0" * 200_000),
                                             "file": SimpleUploadedFile("a.png", png_bytes())}, format="multipart")
    assert r.status_code == 400, r.content
    assert list(r.json()) == ["attachment"], r.json()
    assert Image.objects.count() == 0 and stored_files() == []


def test_a_bulk_upload_still_names_the_file_by_its_index(curator_api, spec, source, settings):
    settings.MATHSET_MAX_UPLOAD_BYTES = 100_000
    curator_api.raise_request_exception = False
    r = curator_api.post("/api/v1/images/bulk/", {"spec": spec.id, "source": source.id, "files": [
        SimpleUploadedFile("a.png", png_bytes()), SimpleUploadedFile("big.bmp", b"\0" * 200_000)]},
        format="multipart")
    assert r.status_code == 400 and list(r.json()) == ["files[1]"], r.content


# ---------------------------------------------------------------- checked, found fine: two saves at once


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.skipif(settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
                    reason="needs PostgreSQL (row locks, concurrent connections): set DATABASE_URL")
def test_a_save_from_a_stale_copy_waits_for_the_other_and_records_from_its_result():
    """Curator A closes a batch while B, whose copy still says active, renames it (or reopens it
    without a reason): B waits on A's row lock, then records only its own change over A's values,
    and a reopening without a reason is refused."""
    spec, vendor = factories.make_spec(), factories.make_vendor()
    a, b = factories.make_user(roles.CURATOR), factories.make_user(roles.CURATOR)
    batch = factories.make_batch(spec, vendor, images=1)
    stale = [Batch.objects.get(pk=batch.pk), Batch.objects.get(pk=batch.pk)]
    results: list = [None, None]
    pids: list[list] = [[], []]

    def save(i, **changes):
        def go():
            pids[i].append(backend_pid())
            return services.batch_update(batch=stale[i], by=b, **changes)
        return go

    with transaction.atomic():
        services.batch_update(batch=Batch.objects.get(pk=batch.pk), by=a, status=Batch.Status.CLOSED)
        threads = [start_thread(save(0, name="Renamed"), results, 0),
                   start_thread(save(1, status=Batch.Status.ACTIVE), results, 1)]
        assert waiting_on_a_lock(pids[0]) and waiting_on_a_lock(pids[1])
    for t in threads:
        t.join(10)
    assert isinstance(results[1], ValidationError) and "reason" in results[1].message_dict, results
    assert not isinstance(results[0], Exception), results
    stored = Batch.objects.get(pk=batch.pk)
    assert (stored.status, stored.name) == (Batch.Status.CLOSED, "Renamed")
    assert [(e.by, e.changes) for e in BatchEvent.objects.filter(batch=batch).order_by("at", "id")][1:] == [
        (a, {"status": ["active", "closed"]}), (b, {"name": [batch.name, "Renamed"]})]
