"""Fixtures shared by the whole suite."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from common import roles
from tests import factories
from tests.browser_fixtures import *  # noqa: F403  (browser, page, login, screenshot, browser_page)

ROOT = Path(__file__).resolve().parent.parent

# Each checkout keeps its own matplotlib font cache. The default one in ~/.cache is shared by every
# virtualenv of the machine and records absolute font paths: one rebuilt by a CI clone's venv while
# that clone was deleted listed none of matplotlib's bundled Computer Modern fonts, so formulas
# rendered here fell back to other glyphs and read differently. Set before matplotlib is imported
# (the suite imports it lazily, from the renderers), and inherited by the Celery workers it starts.
os.environ.setdefault("MPLCONFIGDIR", str(ROOT / "var" / "matplotlib"))


def pytest_configure(config):
    # The suite creates many users; PBKDF2 would dominate its run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _media_root(tmp_path, settings):
    """Each test stores files in its own folder, so orphan checks are exact."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "django.core.files.storage.FileSystemStorage",
                                                          "OPTIONS": {"location": str(tmp_path / "media")}}}
    yield


def ensure_migration_data() -> None:
    """Put back the rows of the data migrations (roles, licence catalogue) if missing.

    Transactional tests (live server, real worker) flush the database when they
    end; serialized_rollback cannot always restore it (the live server and
    Playwright use other connections), so later tests would find no roles.
    """
    import importlib

    from django.apps import apps
    from django.contrib.auth.models import Group

    from common.apps import grant_curator_permissions
    from curation.models import Licence

    if Group.objects.filter(name__in=roles.ROLES).count() < len(roles.ROLES):
        importlib.import_module("common.migrations.0001_roles").create_groups(apps, None)
        grant_curator_permissions(sender=None)
    if not Licence.objects.exists():
        importlib.import_module("curation.migrations.0002_licence_catalogue").load(apps, None)


@pytest.fixture(autouse=True)
def _migration_data(request):
    marker = request.node.get_closest_marker("django_db")
    names = set(request.fixturenames)
    if {"transactional_db", "live_server", "real_worker"} & names or (marker and marker.kwargs.get("transaction")):
        request.getfixturevalue("transactional_db")
    elif marker or "db" in names:
        request.getfixturevalue("db")
    else:
        return
    ensure_migration_data()


@pytest.fixture(autouse=True)
def _eager_celery():
    """Tasks run in-process unless a test asks for the real worker."""
    from config.celery import app

    old = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = old


def stored_files() -> list[str]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def qa_world():
    """The labeling world of tests/qa_world.py, whose progress and QA figures are worked out by hand."""
    from tests.qa_world import make_qa_world

    return make_qa_world()


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def curator(db):
    return factories.make_user(roles.CURATOR)


@pytest.fixture
def model_team(db):
    return factories.make_user(roles.MODEL_TEAM)


@pytest.fixture
def vendor(db):
    return factories.make_vendor()


@pytest.fixture
def annotator(vendor):
    return factories.make_user(roles.ANNOTATOR, vendor=vendor)


@pytest.fixture
def curator_api(api, curator):
    api.force_authenticate(curator)
    return api


@pytest.fixture
def spec(db):
    return factories.make_spec()


@pytest.fixture
def research_spec(db):
    return factories.make_spec(intended_use="research")


@pytest.fixture
def source(db):
    return factories.make_source("cc-by-4.0")


@pytest.fixture
def nc_source(db):
    return factories.make_source("cc-by-nc-sa-3.0")


SHARED_DATA = Path(settings.MATHSET_SHARED_DATA)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it lives beside the project, never inside it)")
    return SHARED_DATA


# ---------------------------------------------------------------- real worker


def _worker_skip_reason() -> str | None:
    if not os.environ.get("REDIS_URL"):
        return "needs a real Celery worker: set REDIS_URL (and DATABASE_URL for PostgreSQL)"
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        return "needs PostgreSQL: the worker process must share the test database (set DATABASE_URL)"
    return None


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker):
    """A real `celery worker` process on Redis, reading the test database.

    It consumes a queue of its own, so messages of other runs never reach it.
    """
    reason = _worker_skip_reason()
    if reason:
        pytest.skip(reason)
    from config.celery import app

    db = settings.DATABASES["default"]
    queue = f"mathset-test-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ)
    env["DATABASE_URL"] = (
        f"postgres://{db.get('USER') or ''}{':' + db['PASSWORD'] if db.get('PASSWORD') else ''}"
        f"@{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db['NAME']}"
    )
    env["MATHSET_CELERY_QUEUE"] = queue
    env["MEDIA_ROOT"] = env.get("MATHSET_TEST_MEDIA", str(ROOT / "var" / "test-media"))
    celery = shutil.which("celery", path=str(Path(sys.executable).parent)) or "celery"
    proc = subprocess.Popen(
        [celery, "-A", "config", "worker", "-Q", queue, "-c", "2", "--loglevel", "WARNING",
         "-n", f"{queue}@%h", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env,
    )
    old_queue = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"celery worker exited with {proc.returncode}")
            replies = app.control.ping(destination=[f"{queue}@{os.uname().nodename}"], timeout=1.0)
            if replies:
                break
        else:
            pytest.fail("celery worker did not answer a ping within 60 s")
        yield {"process": proc, "queue": queue, "env": env, "media_root": env["MEDIA_ROOT"]}
    finally:
        app.conf.task_default_queue = old_queue
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def real_worker(celery_worker_process, transactional_db, settings):
    """Use in a test that must run its tasks on the real worker process."""
    from config.celery import app

    settings.MEDIA_ROOT = celery_worker_process["media_root"]
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "django.core.files.storage.FileSystemStorage",
                                                          "OPTIONS": {"location": celery_worker_process["media_root"]}}}
    app.conf.task_always_eager = False
    yield celery_worker_process
    app.conf.task_always_eager = True


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2):
    """Poll `predicate` until it returns a truthy value or `timeout` passes."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")
