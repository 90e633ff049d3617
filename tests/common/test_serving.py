"""The served configuration: gunicorn's settings file and the WSGI module's frozen heap."""
from __future__ import annotations

import gc
import sys
from pathlib import Path

from gunicorn.config import Config

CONF = Path(__file__).resolve().parents[2] / "config" / "gunicorn.conf.py"


def _load(monkeypatch, **env) -> Config:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cfg = Config()
    namespace: dict = {}
    exec(compile(CONF.read_text(), str(CONF), "exec"), namespace)  # noqa: S102 - as gunicorn reads it
    for key, value in namespace.items():
        if key in cfg.settings:
            cfg.set(key, value)
    return cfg


def test_gunicorn_gives_each_worker_its_own_socket_and_keeps_connections_alive(monkeypatch):
    cfg = _load(monkeypatch, WEB_WORKERS="3", WEB_THREADS="6")
    assert cfg.reuse_port is True
    assert cfg.worker_class_str == "gthread"
    assert (cfg.workers, cfg.threads, cfg.keepalive) == (3, 6, 30)


def test_the_shared_socket_can_be_asked_for(monkeypatch):
    assert _load(monkeypatch, WEB_REUSE_PORT="0").reuse_port is False


def test_gunicorn_freezes_each_workers_heap_once_it_has_loaded_the_app(monkeypatch):
    import config.wsgi

    calls = []
    monkeypatch.setattr(config.wsgi, "settle_heap", lambda: calls.append(1))
    _load(monkeypatch).post_worker_init(None)
    assert calls == [1]
    _load(monkeypatch, MATHSET_GC_FREEZE="0").post_worker_init(None)
    assert calls == [1]


def test_importing_the_wsgi_module_freezes_nothing():
    import importlib

    import config.wsgi

    gc.unfreeze()
    importlib.reload(config.wsgi)
    assert gc.get_freeze_count() == 0


def test_the_wsgi_module_freezes_the_loaded_heap():
    import config.wsgi

    try:
        frozen = config.wsgi.settle_heap()
        # the whole URL tree (every API view module) was imported before the freeze
        assert "labeling.api.views" in sys.modules and "pipeline.api.views" in sys.modules
        # (objects still die by reference count, so the count may have moved on by a few since)
        assert frozen > 10_000 and gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


def test_gunicorn_serves_with_debug_off_unless_debug_is_set(monkeypatch):
    monkeypatch.delenv("DEBUG", raising=False)
    assert _load(monkeypatch).env == {"DEBUG": "0"}
    assert _load(monkeypatch, DEBUG="1").env == {}


def _settings_in_a_fresh_process(_PRINT="print(settings.DEBUG)", **env):
    import os
    import subprocess

    clean = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS")}
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); from django.conf import settings; {_PRINT}"],
        cwd=CONF.parents[1], env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True, text=True, timeout=120)


def test_settings_refuse_the_public_development_secret_key_with_debug_off():
    refused = _settings_in_a_fresh_process(DEBUG="0")
    assert refused.returncode != 0 and "ImproperlyConfigured" in refused.stderr and "SECRET_KEY" in refused.stderr
    served = _settings_in_a_fresh_process(DEBUG="0", SECRET_KEY="a-long-random-production-key")
    assert served.returncode == 0 and served.stdout.strip() == "False", served.stderr
    assert _settings_in_a_fresh_process().stdout.strip() == "True"  # make run: DEBUG on, development key


def test_served_settings_answer_only_the_listed_host_names():
    key = "a-long-random-production-key"
    show = "print(settings.ALLOWED_HOSTS)"
    served = _settings_in_a_fresh_process(DEBUG="0", SECRET_KEY=key, _PRINT=show)
    assert served.stdout.strip() == "['localhost', '127.0.0.1', '[::1]']", served.stderr
    listed = _settings_in_a_fresh_process(DEBUG="0", SECRET_KEY=key, ALLOWED_HOSTS="mathset.example, .lab.example",
                                          _PRINT=show)
    assert listed.stdout.strip() == "['mathset.example', '.lab.example']", listed.stderr
    assert _settings_in_a_fresh_process(_PRINT=show).stdout.strip() == "['*']"  # make run
