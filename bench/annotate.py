"""Benchmark: many annotators taking tasks and submitting answers, against gunicorn on PostgreSQL.

    python bench/annotate.py [--clients 50] [--submits 3000] [--workers 2] [--threads 8] [--keep-db] [--combined]

It creates a fresh database `mathset_bench_annotate` (dropped first), migrates it,
seeds one vendor with `--clients` annotators and enough tasks, starts gunicorn on
127.0.0.1, then runs `--clients` threads, each on its own keep-alive connection,
looping: POST /api/v1/tasks/next/, then POST /api/v1/annotations/ with 3
quadrilateral regions with LaTeX and `submit: true`, until `--submits` answers are
in. With `--combined` each submit also asks for the next task (`"next": true`), so a
client calls POST /api/v1/tasks/next/ only for its first task: one round trip per
cycle instead of two. It prints throughput and p50/p90/p99 latency per request kind, and the CPU
milliseconds per next+submit cycle used by the gunicorn workers, the database's
PostgreSQL backends and the client itself (read from /proc), and writes them as
JSON (`--json`).

The clients, gunicorn and PostgreSQL share the machine's cores: on a 2-core box
the figures are a floor, not what the server alone would do. Throughput and
latency depend on whatever else runs; the CPU per cycle much less so.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._benchutil import process_cpu_seconds  # noqa: E402

DB_NAME = "mathset_bench_annotate"


def pg_url(db: str, base: str) -> str:
    return base.rsplit("/", 1)[0] + "/" + db


def recreate_db(base_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url("postgres", base_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def seed(n_annotators: int, n_tasks: int) -> list[str]:
    """One vendor, its annotators (API tokens returned) and one active batch of n_tasks."""
    import django

    django.setup()
    from decimal import Decimal

    from django.db import transaction

    from common import roles
    from common.services import api_token_rotate, user_create
    from curation.models import Image
    from labeling.services import batch_create, vendor_create
    from tests.factories import make_source, make_spec

    spec = make_spec(name="Bench spec")
    source = make_source(name="Bench source")
    # Image rows only: the benchmark never opens the files, and decoding thousands of
    # PNGs through image_ingest would measure Pillow, not the work queue.
    with transaction.atomic():
        Image.objects.bulk_create([
            Image(spec=spec, source=source, file=f"bench/{i}.png", thumbnail=f"bench/{i}.jpg", sha256=f"{i:064x}",
                  phash=f"{i:016x}", width=1200, height=800, format="PNG", file_size=1000)
            for i in range(n_tasks)
        ], batch_size=2000)
    vendor = vendor_create(name="Bench vendor")
    batch_create(spec=spec, vendor=vendor, name="Bench batch", unit_price=Decimal("0.10"), quantity=n_tasks)
    tokens = []
    for i in range(n_annotators):
        user = user_create(username=f"bench-annotator-{i}", password="bench-pass-1234", role=roles.ANNOTATOR,
                           vendor=vendor)
        tokens.append(api_token_rotate(user=user).key)
    from django.db import connection

    with connection.cursor() as cursor:  # fresh tables: give the planner real statistics, as autovacuum would
        cursor.execute("ANALYZE")
    return tokens


REGIONS = [
    {"kind": "quad", "points": [[100, 100], [500, 110], [495, 220], [98, 210]], "latex": r"\frac{a+b}{2}=c^{2}"},
    {"kind": "quad", "points": [[120, 300], [700, 300], [700, 380], [120, 380]],
     "latex": r"\int_{0}^{1} x^{2} \, dx = \frac{1}{3}"},
    {"kind": "quad", "points": [[600, 500], [1100, 520], [1090, 640], [590, 620]],
     "latex": r"\sqrt{x^{2}+y^{2}} \leq \left| x \right| + \left| y \right|"},
]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _pg_backends(database_url: str) -> list[int]:
    """The PostgreSQL server processes serving the bench database (gunicorn's connections)."""
    import psycopg

    with psycopg.connect(pg_url("postgres", database_url), autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [DB_NAME])]


class CpuMeter:
    """CPU seconds used by the gunicorn workers, the database's backends and this client
    between start() and stop(): load-independent, unlike throughput on a shared box."""

    def __init__(self, server_pid: int, database_url: str):
        self.server_pid, self.database_url = server_pid, database_url

    def _sample(self) -> dict[str, dict[int, float]]:
        workers = [self.server_pid, *_children(self.server_pid)]
        return {"gunicorn": {p: process_cpu_seconds(p) for p in workers},
                "postgres": {p: process_cpu_seconds(p) for p in _pg_backends(self.database_url)}}

    def start(self) -> None:
        self.before, self.client_before = self._sample(), time.process_time()

    def stop(self) -> dict[str, float]:
        after = self._sample()
        used = {kind: sum(cpu - self.before[kind].get(pid, 0.0) for pid, cpu in after[kind].items())
                for kind in after}
        used["client"] = time.process_time() - self.client_before
        return used


def run_clients(base: str, tokens: list[str], total_submits: int, meter: CpuMeter | None = None,
                combined: bool = False) -> dict:
    """`len(tokens)` annotators, each on one keep-alive HTTP connection (reopened when
    the server closes it), asking for the next task and submitting 3 regions, until
    `total_submits` answers are in. With `combined`, a submit asks for the next task
    too and only the first task comes from `tasks/next/` (`next` latencies are then
    those first calls). The client is kept cheap (http.client, bodies built from a
    template) because it shares the machine with the server."""
    import http.client
    from urllib.parse import urlsplit

    host = urlsplit(base)
    lat: dict[str, list[float]] = {"next": [], "submit": []}
    per_client: list[float] = []  # each client's mean request latency: shows an unfair server
    errors: list[str] = []
    lock = threading.Lock()
    remaining = [total_submits]
    start_gate = threading.Barrier(len(tokens) + 1)
    body_head = b'{"task": '
    body_tail = (', "regions": ' + json.dumps(REGIONS) + ', "submit": true, '
                 + ('"next": true, ' if combined else '') + '"time_spent_seconds": ').encode()

    def client(token: str) -> None:
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        headers = {"Authorization": f"Token {token}", "Content-Type": "application/json",
                   "Accept": "application/json"}
        rng = random.Random(token)

        def post(path: str, body: bytes) -> tuple[int, bytes]:
            for attempt in range(2):
                try:
                    conn.request("POST", path, body=body, headers=headers)
                    response = conn.getresponse()
                    return response.status, response.read()
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                    conn.close()  # the server closed a kept-alive connection: open a new one once
                    if attempt:
                        raise
            raise AssertionError("unreachable")

        start_gate.wait()
        mine: list[float] = []
        task = None  # combined: the next task the last submit answered with
        while True:
            with lock:
                if remaining[0] <= 0:
                    break
                remaining[0] -= 1
            t0 = t1 = time.perf_counter()
            if task is None:
                code, text = post("/api/v1/tasks/next/", b"")
                t1 = time.perf_counter()
                task = json.loads(text)["task"] if code == 200 else None
                if task is None:
                    with lock:
                        errors.append(f"next {code} {text[:120]!r}")
                    break
                mine.append(t1 - t0)
                with lock:
                    lat["next"].append(t1 - t0)
            body = b"%s%d%s%.1f}" % (body_head, task["id"], body_tail, rng.uniform(20, 90))
            code, text = post("/api/v1/annotations/", body)
            t2 = time.perf_counter()
            mine.append(t2 - t1)
            task = None
            with lock:
                if code == 201:
                    lat["submit"].append(t2 - t1)
                else:
                    errors.append(f"submit {code} {text[:120]!r}")
            if combined and code == 201:
                nxt = json.loads(text)["next"]
                task = nxt["task"] if nxt else None
                if task is None:
                    with lock:
                        if remaining[0] > 0:
                            errors.append(f"submit+next gave no task: {text[-200:]!r}")
                    break
        conn.close()
        if mine:
            with lock:
                per_client.append(statistics.fmean(mine))

    threads = [threading.Thread(target=client, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    if meter:
        meter.start()
    start_gate.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    cpu = meter.stop() if meter else None
    both = lat["next"] + lat["submit"]
    ms = lambda v: round(v * 1000, 1)  # noqa: E731
    n = len(lat["submit"])
    out = {
        "clients": len(tokens),
        "elapsed_s": round(elapsed, 2),
        "submits": n,
        "submits_per_s": round(n / elapsed, 1),
        "requests_per_s": round(len(both) / elapsed, 1),
        "errors": len(errors),
        "first_errors": errors[:5],
        "latency_ms": {
            kind: {"p50": ms(percentile(v, 50)), "p90": ms(percentile(v, 90)), "p99": ms(percentile(v, 99)),
                   "mean": ms(statistics.fmean(v)) if v else None}
            for kind, v in (("next", lat["next"]), ("submit", lat["submit"]), ("all", both))
        },
        "client_mean_latency_ms": {"min": ms(min(per_client)), "median": ms(statistics.median(per_client)),
                                   "max": ms(max(per_client))} if per_client else None,
    }
    if cpu and n:
        # CPU per next+submit cycle: what the machine must supply, whatever else runs on it.
        out["cpu_ms_per_cycle"] = {k: round(1000 * v / n, 2) for k, v in cpu.items()}
        out["cpu_ms_per_cycle"]["server_total"] = round(1000 * (cpu["gunicorn"] + cpu["postgres"]) / n, 2)
    return out


def wait_up(base: str, workers: int, timeout: float = 120) -> None:
    """Until gunicorn answers; a few extra requests so every worker has loaded Django."""
    import requests

    deadline = time.time() + timeout
    answered = 0
    while time.time() < deadline:
        try:
            requests.get(f"{base}/api/v1/", timeout=10)
            answered += 1
            if answered >= 4 * workers:
                return
        except requests.RequestException:
            time.sleep(0.3)
    raise SystemExit("gunicorn did not come up")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--submits", type=int, default=3000)
    # gthread workers keep the clients' connections alive (sync workers close each one);
    # two processes already use both cores, threads cover the waits on PostgreSQL.
    ap.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    ap.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker (gthread if > 1)")
    ap.add_argument("--shared-socket", action="store_true",
                    help="one listening socket for all workers (gunicorn's default; config/gunicorn.conf.py "
                         "gives each worker its own, and the kernel spreads the connections)")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--database-url", default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/x"),
                    help="any URL of the PostgreSQL server; the database name is replaced")
    ap.add_argument("--combined", action="store_true",
                    help='each submit asks for the next task too ("next": true): one request per cycle')
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--keep-db", action="store_true", help="do not drop the database afterwards")
    ap.add_argument("--seed-only", action="store_true", help="create and seed the database, then stop")
    args = ap.parse_args()

    if not args.database_url.startswith("postgres"):
        raise SystemExit("the benchmark needs PostgreSQL (--database-url postgres://...)")
    url = pg_url(DB_NAME, args.database_url)
    var = Path(tempfile.mkdtemp(prefix="mathset-bench-"))
    env = dict(os.environ, DATABASE_URL=url, DEBUG="0", DB_CONN_MAX_AGE="600", MATHSET_VAR_DIR=str(var),
               LOG_LEVEL="WARNING", SECRET_KEY="bench-only", PYTHONPATH=str(ROOT))
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

    print(f"database {DB_NAME}: recreate and migrate", flush=True)
    recreate_db(args.database_url)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    print(f"seeding {args.clients} annotators and {args.submits + args.clients} tasks", flush=True)
    tokens = seed(args.clients, args.submits + args.clients)
    from django.db import connections

    connections.close_all()
    if args.seed_only:
        print(f"seeded {url}")
        return

    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    # The served configuration (config/gunicorn.conf.py), sized by the options.
    cmd = [gunicorn, "-c", str(ROOT / "config" / "gunicorn.conf.py"), "config.wsgi", "-b", f"127.0.0.1:{args.port}",
           "-w", str(args.workers), "--threads", str(args.threads), "--log-level", "warning"]
    if args.threads == 1:
        cmd += ["--worker-class", "sync"]
    loadavg_before = [round(x, 2) for x in os.getloadavg()]
    server = subprocess.Popen(cmd, cwd=ROOT, env=dict(env, WEB_REUSE_PORT="0" if args.shared_socket else "1"),
                              start_new_session=True)
    base = f"http://127.0.0.1:{args.port}"
    try:
        wait_up(base, args.workers)
        print(f"gunicorn: {args.workers} workers x {args.threads} threads; {args.clients} clients, "
              f"{args.submits} submits{', combined submit+next' if args.combined else ''}", flush=True)
        results = run_clients(base, tokens, args.submits, CpuMeter(server.pid, args.database_url),
                              combined=args.combined)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    results.update(mode="combined" if args.combined else "plain", workers=args.workers, threads=args.threads, cpu_count=os.cpu_count(),
                   loadavg_before=loadavg_before, loadavg_after=[round(x, 2) for x in os.getloadavg()])
    import django.db

    django.db.connections.close_all()
    if not args.keep_db:
        import psycopg

        with psycopg.connect(pg_url("postgres", args.database_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    shutil.rmtree(var, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
