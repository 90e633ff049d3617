"""gunicorn settings for serving Mathset: ``gunicorn -c config/gunicorn.conf.py config.wsgi``
(``make serve``). Command-line options override them; the environment sets the sizes.

Measured with ``bench/annotate.py`` (50 annotators on keep-alive connections, 2 cores; see
bench/README.md):
* ``gthread``: threads cover the waits on PostgreSQL; each process still runs Python on one
  core at a time, hence one process per core. 4 threads served better than 6 or 8 (less GIL
  contention): p99 118-134 ms at 304-324 submits/s, against 132-166 ms with 8.
* ``reuse_port``: each worker listens on its own socket and the kernel spreads new connections
  between them. With one shared socket, whichever worker was quickest to accept took most of
  the keep-alive connections, and kept them: clients on the busy worker waited up to 5x longer
  than the others (each client's mean latency from 26 to 152 ms; p99 ~300 ms); spread, the
  clients' means lie close together (80-83 ms in one run, 60-98 in another).
* ``post_worker_init``: the loaded worker's heap is frozen (``config.wsgi.settle_heap``), so
  that full garbage collections stop stalling every request of the worker at once
  (``MATHSET_GC_FREEZE=0`` leaves it alone).
"""
import multiprocessing
import os

# Serving means DEBUG off (no tracebacks with settings and local variables for whoever triggers
# an error) unless DEBUG is set explicitly; with DEBUG off the settings refuse the public
# development SECRET_KEY, so set SECRET_KEY too.
raw_env = [] if "DEBUG" in os.environ else ["DEBUG=0"]
bind = os.environ.get("WEB_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_WORKERS", multiprocessing.cpu_count()))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
reuse_port = os.environ.get("WEB_REUSE_PORT", "1") != "0"
keepalive = 30
backlog = 2048
timeout = 60


def post_worker_init(worker):
    if os.environ.get("MATHSET_GC_FREEZE", "1") != "0":
        from config.wsgi import settle_heap

        settle_heap()
