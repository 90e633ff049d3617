"""QA statistics computed side by side on threads (PostgreSQL, outside a transaction) equal the
same report computed one section after another; inside a transaction the sections never leave
the caller's connection."""
from __future__ import annotations

import threading

import pytest
from django.conf import settings
from django.db import connection, transaction

from pipeline import stats
from tests.conftest import wait_for
from tests.qa_world import make_qa_world

POSTGRES = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def _without_timings(payload: dict) -> dict:
    return {k: v for k, v in payload.items() if k != "timings_ms"}


def _section_threads(monkeypatch, backends: set[int] | None = None) -> set[str]:
    """Patch every section's analytic transaction to record the thread it ran on (and, given
    `backends`, the PostgreSQL backend its connection talks to)."""
    seen: set[str] = set()
    original = stats.analytic_reads

    def recording():
        seen.add(threading.current_thread().name)
        if backends is not None:
            with connection.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                backends.add(cur.fetchone()[0])
        return original()

    monkeypatch.setattr(stats, "analytic_reads", recording)
    return seen


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.skipif(not POSTGRES, reason="sections run side by side only on PostgreSQL (set DATABASE_URL)")
def test_sections_run_side_by_side_give_the_same_report(monkeypatch, settings):
    world = make_qa_world()
    settings.QA_STATS_THREADS = 1
    one_by_one = stats.spec_stats_payload(spec=world.spec)
    settings.QA_STATS_THREADS = 3
    backends: set[int] = set()
    threads = _section_threads(monkeypatch, backends)
    side_by_side = stats.spec_stats_payload(spec=world.spec)
    assert all(name.startswith("qa-stats") for name in threads) and len(threads) > 1
    assert _without_timings(side_by_side) == _without_timings(one_by_one)
    assert set(side_by_side["timings_ms"]) == {"throughput", "prelabel", "agreement", "gold", "reviews"}
    # The worker threads closed their connections: none of their backends is left.
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backends.discard(cur.fetchone()[0])
        assert len(backends) > 1

    def gone() -> bool:  # a backend leaves pg_stat_activity a moment after its client closes
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [list(backends)])
            return cur.fetchone()[0] == 0

    wait_for(gone, timeout=5)


@pytest.mark.django_db
def test_inside_a_transaction_the_sections_stay_on_the_callers_connection(monkeypatch, settings):
    world = make_qa_world()
    settings.QA_STATS_THREADS = 4
    threads = _section_threads(monkeypatch)
    with transaction.atomic():
        assert stats.section_threads() == 1
        payload = stats.spec_stats_payload(spec=world.spec)
    assert threads == {threading.current_thread().name}
    # Rows the caller has not committed are seen (they would not be from another connection).
    assert payload["throughput"]["overall"]["annotations"] == 5


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.skipif(not POSTGRES, reason="sections run side by side only on PostgreSQL (set DATABASE_URL)")
def test_the_refresh_job_stores_progress_and_statistics_computed_side_by_side(monkeypatch, settings):
    from curation.models import ProgressReport
    from curation.progress import progress_compute
    from pipeline.models import QAReport

    world = make_qa_world()
    settings.QA_STATS_THREADS = 1
    expected_progress = progress_compute(spec=world.spec)
    expected_stats = _without_timings(stats.spec_stats_payload(spec=world.spec))
    settings.QA_STATS_THREADS = 2
    from curation import services as cs

    progress_threads = []
    original = cs.spec_progress_refresh

    def recording(**kwargs):
        progress_threads.append(threading.current_thread().name)
        return original(**kwargs)

    monkeypatch.setattr(cs, "spec_progress_refresh", recording)
    report = stats.spec_reports_refresh(spec=world.spec)
    assert progress_threads == ["qa-stats-progress_0"]  # the progress ran on its own thread
    assert _without_timings(QAReport.objects.get(pk=report.pk).payload) == expected_stats
    assert ProgressReport.objects.get(spec=world.spec).payload == expected_progress
