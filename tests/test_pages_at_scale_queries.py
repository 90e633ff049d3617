"""What bench/pages.py found slow at 100,000 images, held by the SQL the requests run (no timing).

- The task and annotation lists filtered by status (a column of the row itself) ran a
  ``SELECT DISTINCT`` over every column, JSON included, and counted over that: django-filter's
  MultipleChoiceFilter removes duplicates by default, though a column of the row makes none. The
  task list's category filter joined the image's categories and removed the duplicates the same
  way; it is a semi-join (EXISTS) now.
- PostgreSQL's JIT compiled the cost report's aggregate for longer than it ran: the web's
  connections run with ``jit=off`` unless ``DB_JIT=1``.
"""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from common import roles
from curation.models import Category, Image
from labeling import services
from labeling.models import Task
from tests import factories
from tests.factories import quad
from tests.labeling.conftest import client_for

pytestmark = pytest.mark.django_db


def _list_sql(client, url: str) -> tuple[dict, list[str]]:
    with CaptureQueriesContext(connection) as ctx:
        r = client.get(url)
    assert r.status_code == 200, (url, r.content[:300])
    return r.json(), [q["sql"] for q in ctx.captured_queries]


def test_status_and_category_filters_of_task_and_annotation_lists_run_without_distinct(vendor, spec):
    batch = factories.make_batch(spec, vendor, images=3)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    task = services.task_claim_next(annotator=annotator).task
    services.annotation_create(task=task, annotator=annotator, submit=True, regions=[quad()])
    # One image in two kinds (its task must be listed once), one in another kind only.
    others = list(Task.objects.filter(batch=batch).exclude(pk=task.pk).order_by("id"))
    printed, handwritten = (Category.objects.get(spec=spec, slug=s) for s in ("printed", "handwritten"))
    Image.categories.through.objects.create(image_id=task.image_id, category_id=handwritten.id)
    Image.categories.through.objects.filter(image_id=others[0].image_id).delete()
    Image.categories.through.objects.create(image_id=others[0].image_id, category_id=handwritten.id)
    assert printed.images.filter(pk=task.image_id).exists()
    client = client_for(factories.make_user(roles.CURATOR))

    cases = {
        f"/api/v1/tasks/?status=submitted&spec={spec.id}": {task.pk},
        "/api/v1/tasks/?status=submitted&status=new": {t.pk for t in Task.objects.filter(batch=batch)},
        "/api/v1/tasks/?category=printed": {task.pk, others[1].pk},
        "/api/v1/tasks/?category=handwritten": {task.pk, others[0].pk},
        "/api/v1/tasks/?category=highlighter": set(),
    }
    for url, expected in cases.items():
        body, sqls = _list_sql(client, url)
        ids = [row["id"] for row in body["results"]]
        assert sorted(ids) == sorted(expected) and body["count"] == len(expected), url
        assert not any("DISTINCT" in sql.upper() for sql in sqls), (url, [s for s in sqls if "DISTINCT" in s])

    body, sqls = _list_sql(client, "/api/v1/annotations/?status=submitted&status=accepted")
    assert body["count"] == 1 and body["results"][0]["task"] == task.pk
    assert not any("DISTINCT" in sql.upper() for sql in sqls)


def test_postgresql_connections_run_without_jit(settings):
    if connection.vendor != "postgresql":
        pytest.skip("JIT is PostgreSQL's (SQLite has none)")
    with connection.cursor() as cur:
        cur.execute("SHOW jit")
        assert cur.fetchone()[0] == "off"


def test_settings_turn_jit_off_for_postgresql_unless_asked(monkeypatch):
    """The settings module itself, read with a PostgreSQL URL (no server needed)."""
    import importlib

    import config.settings as config_settings

    monkeypatch.setenv("DATABASE_URL", "postgres://u@127.0.0.1:5432/x?options=-c%20statement_timeout%3D5000")
    monkeypatch.setenv("SECRET_KEY", "test-" + "k" * 50)
    monkeypatch.delenv("DB_JIT", raising=False)
    try:
        fresh = importlib.reload(config_settings)
        options = fresh.DATABASES["default"]["OPTIONS"]["options"]
        assert "-c jit=off" in options and "statement_timeout" in options
        monkeypatch.setenv("DB_JIT", "1")
        fresh = importlib.reload(config_settings)
        assert "jit" not in fresh.DATABASES["default"].get("OPTIONS", {}).get("options", "")
    finally:
        monkeypatch.undo()
        importlib.reload(config_settings)
