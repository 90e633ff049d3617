"""WSGI entry point (gunicorn config.wsgi)."""
import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()


def settle_heap() -> int:
    """Import what the first requests would import lazily, then freeze the heap: returns the
    number of objects frozen.

    A loaded worker holds ~150,000 long-lived objects (Django, DRF, numpy, shapely, the URL
    tree) and every full collection walked them all: ~70 ms of a held GIL on an idle core,
    several hundred on a busy one, every few seconds under load, which stalled all requests
    of that worker at once (the p99 of bench/annotate.py). ``gc.freeze()`` moves them to a
    permanent generation that collections skip (as Instagram does for its Django workers);
    objects made later are collected as usual. Called by gunicorn once a worker has loaded the
    app (``post_worker_init`` in config/gunicorn.conf.py), not on import: the test server and
    ``runserver`` import this module too.
    """
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - imports every view, serializer and what they use
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
