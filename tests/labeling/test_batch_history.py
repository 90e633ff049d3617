"""A batch keeps its history: who made it, and who changed its status, deadline, price,
currency, agreed quantity or name, when, from what to what, and why. Reopening a closed
batch needs a reason (a 400 naming `reason`, nothing changed); the history is read on the
batch's edit page and at /api/v1/batches/{id}/history/ (vendor users: their own batches,
prices only where they may see prices)."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from common import roles
from labeling import services
from labeling.models import Batch, BatchEvent
from tests import factories
from tests.labeling.conftest import client_for
from tests.pages import field_errors, text
from tests.schema import assert_response_matches_schema

pytestmark = pytest.mark.django_db


def fresh(batch) -> Batch:
    return Batch.objects.get(pk=batch.pk)


def events(batch) -> list[BatchEvent]:
    return list(BatchEvent.objects.filter(batch=batch).order_by("at", "id"))


def closed(batch, by=None) -> Batch:
    return services.batch_update(batch=fresh(batch), status=Batch.Status.CLOSED, by=by)


def history_url(batch) -> str:
    return f"/api/v1/batches/{batch.pk}/history/"


# ---------------------------------------------------------------- the service


def test_making_a_batch_records_who_made_it_with_its_starting_values(spec, vendor, curator):
    factories.make_image(spec=spec, data=factories.png_bytes(200, 100))
    batch = services.batch_create(spec=spec, vendor=vendor, name="Round 1", quantity=1, unit_price=Decimal("0.3"),
                                  deadline=dt.date(2027, 1, 31), created_by=curator)
    [event] = events(batch)
    assert (event.kind, event.by, event.reason) == (BatchEvent.Kind.CREATED, curator, "")
    assert event.changes == {"name": [None, "Round 1"], "status": [None, "active"], "deadline": [None, "2027-01-31"],
                             "unit_price": [None, "0.3000"], "currency": [None, "USD"],
                             "agreed_quantity": [None, 1]}


def test_an_update_records_one_event_with_the_old_and_new_value_of_each_changed_field(batch, curator):
    services.batch_update(batch=fresh(batch), by=curator, deadline=dt.date(2027, 3, 1), unit_price=Decimal("0.5"),
                          currency="eur", name=batch.name, reason="Rush order")
    [_, event] = events(batch)
    assert (event.kind, event.by, event.reason) == (BatchEvent.Kind.CHANGED, curator, "Rush order")
    # the name was sent unchanged: not recorded
    assert event.changes == {"deadline": [None, "2027-03-01"], "unit_price": ["0.2500", "0.5000"],
                             "currency": ["USD", "EUR"]}


def test_an_update_that_changes_nothing_records_nothing(batch, curator):
    before = events(batch)
    b = fresh(batch)
    services.batch_update(batch=b, by=curator, status=b.status, name=b.name, unit_price=Decimal("0.25"),
                          currency="usd", agreed_quantity=b.agreed_quantity, reason="no-op")
    services.batch_update(batch=fresh(batch), by=curator)
    assert events(batch) == before


def test_a_command_without_a_user_is_recorded_as_nobody(batch):
    closed(batch)
    assert events(batch)[-1].by is None and events(batch)[-1].changes == {"status": ["active", "closed"]}


@pytest.mark.parametrize("status", [Batch.Status.ACTIVE, Batch.Status.PAUSED])
@pytest.mark.parametrize("reason", ["", "   \n"])
def test_reopening_a_closed_batch_without_a_reason_is_refused_and_changes_nothing(batch, curator, status, reason):
    closed(batch, by=curator)
    before = events(batch)
    with pytest.raises(ValidationError) as exc:
        services.batch_update(batch=fresh(batch), by=curator, status=status, name="Renamed", reason=reason)
    assert "reason" in exc.value.message_dict
    b = fresh(batch)
    assert (b.status, b.name) == (Batch.Status.CLOSED, batch.name)
    assert events(batch) == before


def test_reopening_a_closed_batch_with_a_reason_is_recorded(batch, curator):
    closed(batch, by=curator)
    services.batch_update(batch=fresh(batch), by=curator, status=Batch.Status.ACTIVE, reason="  Closed by mistake ")
    event = events(batch)[-1]
    assert (event.kind, event.by, event.reason) == (BatchEvent.Kind.REOPENED, curator, "Closed by mistake")
    assert event.changes == {"status": ["closed", "active"]}
    assert fresh(batch).status == Batch.Status.ACTIVE


def test_a_closed_batch_may_be_renamed_without_a_reason(batch, curator):
    closed(batch, by=curator)
    services.batch_update(batch=fresh(batch), by=curator, name="Archive 2026")
    assert events(batch)[-1].changes == {"name": [batch.name, "Archive 2026"]}


def test_the_reopen_check_reads_the_stored_status_not_a_stale_copy(batch, curator):
    stale = fresh(batch)  # read while active
    closed(batch, by=curator)
    with pytest.raises(ValidationError) as exc:
        services.batch_update(batch=stale, by=curator, status=Batch.Status.ACTIVE)
    assert "reason" in exc.value.message_dict
    assert fresh(batch).status == Batch.Status.CLOSED


# ---------------------------------------------------------------- the API


def test_patch_with_a_reason_reopens_and_is_recorded(batch, curator, curator_api):
    closed(batch, by=curator)
    r = curator_api.patch(f"/api/v1/batches/{batch.pk}/", {"status": "paused", "reason": "Vendor asked"},
                          format="json")
    assert r.status_code == 200, r.content
    assert_response_matches_schema(r)
    assert r.json()["status"] == "paused" and "reason" not in r.json()  # write-only
    event = events(batch)[-1]
    assert (event.kind, event.by, event.reason, event.changes) == (
        BatchEvent.Kind.REOPENED, curator, "Vendor asked", {"status": ["closed", "paused"]})


@pytest.mark.parametrize("body", [{"status": "active"}, {"status": "active", "reason": " "}])
def test_patch_reopening_without_a_reason_is_a_400_naming_reason(batch, curator, curator_api, body):
    closed(batch, by=curator)
    before = events(batch)
    r = curator_api.patch(f"/api/v1/batches/{batch.pk}/", {**body, "deadline": "2027-05-01"}, format="json")
    assert r.status_code == 400, r.content
    assert list(r.json()) == ["reason"], r.json()
    b = fresh(batch)
    assert (b.status, b.deadline) == (Batch.Status.CLOSED, None)
    assert events(batch) == before


def test_history_lists_each_change_oldest_first_with_who_old_new_and_reason(batch, curator, curator_api):
    curator_api.patch(f"/api/v1/batches/{batch.pk}/", {"status": "closed"}, format="json")
    curator_api.patch(f"/api/v1/batches/{batch.pk}/", {"status": "active", "reason": "Closed by mistake"},
                      format="json")
    r = curator_api.get(history_url(batch))
    assert r.status_code == 200, r.content
    assert_response_matches_schema(r)
    body = r.json()
    assert body["count"] == 3
    created, close, reopen = body["results"]
    assert created["kind"] == "created" and created["by"] is None  # the factory's batch: made by no user
    assert created["changes"]["agreed_quantity"] == [None, 3]
    assert (close["kind"], close["by"], close["changes"], close["reason"]) == (
        "changed", curator.username, {"status": ["active", "closed"]}, "")
    assert (reopen["kind"], reopen["by"], reopen["changes"], reopen["reason"]) == (
        "reopened", curator.username, {"status": ["closed", "active"]}, "Closed by mistake")
    assert set(reopen) == {"id", "at", "by", "kind", "changes", "reason"}
    # paged like the other lists; the batch list's filters do not apply to one batch's history
    page = curator_api.get(history_url(batch), {"limit": 1, "offset": 2, "kind": "latex"}).json()
    assert page["count"] == 3 and [e["kind"] for e in page["results"]] == ["reopened"]


def test_a_reason_too_long_is_a_400_naming_reason(batch, curator_api):
    r = curator_api.patch(f"/api/v1/batches/{batch.pk}/", {"name": "x", "reason": "y" * 2001}, format="json")
    assert r.status_code == 400 and list(r.json()) == ["reason"], r.content
    assert fresh(batch).name == batch.name


def test_vendor_people_read_their_batches_history_prices_only_for_managers(batch, vendor, curator, curator_api,
                                                                            annotator, manager):
    curator_api.patch(f"/api/v1/batches/{batch.pk}/", {"unit_price": "0.40"}, format="json")
    curator_api.patch(f"/api/v1/batches/{batch.pk}/", {"unit_price": "0.45", "deadline": "2027-02-01"},
                      format="json")
    r = client_for(manager).get(history_url(batch))
    assert r.status_code == 200, r.content
    assert_response_matches_schema(r)
    assert [e["changes"].get("unit_price") for e in r.json()["results"]] == [
        [None, "0.2500"], ["0.2500", "0.4000"], ["0.4000", "0.4500"]]
    assert r.json()["results"][1]["by"] == curator.username
    r = client_for(annotator).get(history_url(batch))
    assert r.status_code == 200, r.content
    assert_response_matches_schema(r)
    results = r.json()["results"]
    # the price-only change is not listed at all; the others without their prices
    assert [e["kind"] for e in results] == ["created", "changed"] and r.json()["count"] == 2
    assert all("unit_price" not in e["changes"] and "currency" not in e["changes"] for e in results)
    assert results[1]["changes"] == {"deadline": [None, "2027-02-01"]}


@pytest.mark.parametrize("role", [roles.ANNOTATOR, roles.REVIEWER, roles.VENDOR_MANAGER])
def test_another_vendors_people_get_404_on_the_history(batch, role):
    other = factories.make_user(role, vendor=factories.make_vendor())
    r = client_for(other).get(history_url(batch))
    assert r.status_code == 404


def test_model_teams_and_anonymous_users_do_not_read_batch_history(batch, model_team, api):
    assert client_for(model_team).get(history_url(batch)).status_code == 404
    assert api.get(history_url(batch)).status_code in (401, 403)


def test_history_reads_a_constant_number_of_queries(batch, curator, curator_api):
    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            r = curator_api.get(history_url(batch))
        assert r.status_code == 200
        return len(ctx.captured_queries)

    closed(batch, by=curator)
    count()  # the first request caches the user's vendor (none) on the user
    few = count()
    for i in range(6):
        who = factories.make_user(roles.CURATOR)
        services.batch_update(batch=fresh(batch), by=who, name=f"Name {i}")
    assert BatchEvent.objects.filter(batch=batch).count() == 8
    assert count() == few


# ---------------------------------------------------------------- the edit page


def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def edit_data(batch, **overrides) -> dict:
    data = {"name": batch.name, "status": batch.status, "unit_price": str(batch.unit_price),
            "currency": batch.currency, "agreed_quantity": str(batch.agreed_quantity), "deadline": "", "reason": ""}
    data.update(overrides)
    return data


def test_edit_page_refuses_to_reopen_a_closed_batch_without_a_reason(batch, curator):
    b = closed(batch, by=curator)
    cur = page_client(curator)
    url = f"/batches/{batch.pk}/edit/"
    page = text(cur.get(url))
    assert "Reopening a closed batch needs a reason" in page
    before = events(batch)
    r = cur.post(url, edit_data(b, status="active"))
    assert r.status_code == 400
    assert field_errors(r, "id_reason"), r.content.decode()
    assert fresh(batch).status == Batch.Status.CLOSED and events(batch) == before
    r = cur.post(url, edit_data(b, status="active", reason="Vendor found more capacity"))
    assert r.status_code == 302
    event = events(batch)[-1]
    assert (event.kind, event.by, event.reason) == (BatchEvent.Kind.REOPENED, curator,
                                                    "Vendor found more capacity")
    assert fresh(batch).status == Batch.Status.ACTIVE


def test_edit_page_shows_the_history_who_what_old_new_and_why(batch, curator):
    cur = page_client(curator)
    url = f"/batches/{batch.pk}/edit/"
    assert cur.post(url, edit_data(fresh(batch), status="closed", deadline="2027-04-30")).status_code == 302
    assert cur.post(url, edit_data(fresh(batch), status="paused", deadline="2027-04-30",
                                   reason="Closed too early")).status_code == 302
    page = text(cur.get(url))
    assert "History" in page
    assert "Closed too early" in page
    assert "Status: Closed → Paused" in page
    assert "Status: Active → Closed" in page and "Deadline: — → 2027-04-30" in page
    assert curator.username in page


def test_admin_action_does_not_reopen_a_closed_batch_without_a_reason(batch, curator):
    closed(batch)
    client = page_client(curator)
    r = client.post("/admin/labeling/batch/", {"action": "batch_active", "_selected_action": [batch.pk]},
                    follow=True)
    assert r.status_code == 200
    assert fresh(batch).status == Batch.Status.CLOSED
    assert f"{batch.name}: Say why this closed batch is reopened" in text(r) and "from its edit page" in text(r)
    r = client.post("/admin/labeling/batch/", {"action": "batch_paused", "_selected_action": [
        factories.make_batch(images=1).pk]})
    assert r.status_code == 302
    assert BatchEvent.objects.filter(by=curator, changes__status=["active", "paused"]).count() == 1
