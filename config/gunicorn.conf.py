"""gunicorn settings for serving Mathset: ``gunicorn -c config/gunicorn.conf.py config.wsgi``
(``make serve``). Command-line options override them; the environment sets the sizes.

Measured with ``bench/annotate.py`` (50 annotators on keep-alive connections, 2 cores):
* ``gthread``: threads cover the waits on PostgreSQL; each process still runs Python on one
  core at a time, hence one process per core.
* ``reuse_port``: each worker listens on its own socket and the kernel spreads new connections
  between them. With one shared socket, whichever worker was quickest to accept took most of
  the keep-alive connections, and kept them: clients on the busy worker waited 5x longer than
  the others (mean latency 45 ms for the luckiest client, 243 ms for the unluckiest; p99 573 ms);
  spread, the clients' means lie within 96-128 ms and the p99 is ~220 ms at more throughput.
"""
import multiprocessing
import os

bind = os.environ.get("WEB_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_WORKERS", multiprocessing.cpu_count()))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "8"))
reuse_port = os.environ.get("WEB_REUSE_PORT", "1") != "0"
keepalive = 30
backlog = 2048
timeout = 60
