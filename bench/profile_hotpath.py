"""Profile the annotators' hot path in-process: CPU per request, and where it goes.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mathset_hotpath \\
        python bench/profile_hotpath.py [--cycles 300] [--rounds 3] [--profile-cycles 200] [--combined]
                                        [--top 35] [--callers PATTERN] [--gunicorn N --clients K]

What bench/annotate.py's clients send (POST /api/v1/tasks/next/, then POST
/api/v1/annotations/ with 3 quadrilaterals with LaTeX and `submit: true`; with
`--combined` the submit asks for the next task too, as `annotate.py --combined`
does), driven single-threaded through Django's WSGI handler, as gunicorn calls it,
so that the machine's other work does not distort the figures:

1. a timed pass of `--cycles` next+submit cycles in `--rounds` rounds: CPU
   milliseconds per request (time.process_time of this process: middleware, DRF,
   views, services, psycopg's client side) and the CPU the PostgreSQL backend used
   for them (read from /proc); the best round is the one least slowed by other load;
2. with `--gunicorn N`, N cycles from `--clients` keep-alive clients (default one)
   against gunicorn (gthread, `--workers` x `--threads`, as bench/annotate.py
   starts it) on the same database: the workers' and backends' CPU per cycle;
3. a cProfile pass (CPU time) of `--profile-cycles` more cycles: Python function
   calls per cycle (independent of the machine's load, so the steadiest
   before/after measure on a shared box), the top functions by cumulative and by
   own time, and with `--callers` who calls the functions matching a pattern.

CPU times on a shared 2-core machine rise with its load (the cores' caches and
hyperthreads are shared): compare two versions by running them at the same time
(each on its own DATABASE_URL name) or by their calls per cycle.

The database: Django's test database beside DATABASE_URL's (`test_<name>`),
created, migrated and dropped again like pytest's, and seeded by
bench/annotate.py's `seed` (one vendor, 50 annotators with API tokens, one active
batch); the named database itself is not touched. Settings as in the benchmark:
DEBUG off, persistent connections, prepared statements. REDIS_URL is honoured
(the QA-statistics debounce goes through the cache). SQLite works too (an
in-memory test database) but says little about production.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._benchutil import process_cpu_seconds  # noqa: E402


def _pg_backend_cpu(conn) -> float | None:
    """CPU seconds used so far by the PostgreSQL backend serving `conn` (same machine), else None."""
    if conn.vendor != "postgresql":
        return None
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    return process_cpu_seconds(pid)


class Driver:
    """Calls the WSGI application with the environ gunicorn would build for the bench's requests."""

    def __init__(self, tokens: list[str], combined: bool):
        from django.core.handlers.wsgi import WSGIHandler

        from bench.annotate import REGIONS

        self.app = WSGIHandler()
        self.tokens = tokens
        self.combined = combined
        self.rng = random.Random(1)
        self.pending: dict[str, dict | None] = {}  # token -> task from the last combined submit
        self.body_head = b'{"task": '
        self.body_tail = (', "regions": ' + json.dumps(REGIONS) + ', "submit": true, '
                          + ('"next": true, ' if combined else '') + '"time_spent_seconds": ').encode()

    def call(self, path: str, token: str, body: bytes) -> tuple[int, bytes]:
        environ = {
            "REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8765", "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:8765", "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)), "HTTP_AUTHORIZATION": f"Token {token}",
            "HTTP_ACCEPT": "application/json", "HTTP_CONNECTION": "keep-alive",
            "HTTP_ACCEPT_ENCODING": "identity", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
            "wsgi.url_scheme": "http", "wsgi.version": (1, 0), "wsgi.multithread": True,
            "wsgi.multiprocess": True, "wsgi.run_once": False,
        }
        status: list[str] = []
        result = self.app(environ, lambda s, headers, exc_info=None: status.append(s))
        try:
            content = b"".join(result)
        finally:
            result.close()  # fires request_finished, as gunicorn does
        return int(status[0].split()[0]), content

    def next_task(self, token: str) -> tuple[dict | None, float]:
        t0 = time.process_time()
        code, text = self.call("/api/v1/tasks/next/", token, b"")
        cpu = time.process_time() - t0
        if code != 200:
            raise SystemExit(f"next answered {code}: {text[:300]!r}")
        return json.loads(text)["task"], cpu

    def submit(self, token: str, task: dict) -> tuple[dict, float]:
        body = b"%s%d%s%.1f}" % (self.body_head, task["id"], self.body_tail, self.rng.uniform(20, 90))
        t0 = time.process_time()
        code, text = self.call("/api/v1/annotations/", token, body)
        cpu = time.process_time() - t0
        if code != 201:
            raise SystemExit(f"submit answered {code}: {text[:300]!r}")
        return json.loads(text), cpu

    def cycle(self, i: int) -> dict[str, float]:
        """One annotator's next (unless a combined submit already gave the task) and submit."""
        token = self.tokens[i % len(self.tokens)]
        cpu = {}
        task = self.pending.pop(token, None) if self.combined else None
        if task is None:
            task, cpu["next"] = self.next_task(token)
            if task is None:
                raise SystemExit("the queue ran dry: seed more tasks")
        answer, cpu["submit"] = self.submit(token, task)
        if self.combined:
            self.pending[token] = answer["next"]["task"] if answer.get("next") else None
        return cpu


def gunicorn_pass(args, tokens: list[str]) -> None:
    """`args.gunicorn` cycles from `args.clients` keep-alive clients (one annotator each)
    through gunicorn: the workers' and the database backends' CPU per cycle."""
    import http.client
    import shutil
    import signal
    import subprocess
    import threading

    from django.db import connection

    import bench.annotate as annotate

    if connection.vendor != "postgresql":
        print("--gunicorn needs PostgreSQL (the test database must be reachable from other processes)")
        return
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = dict(os.environ, DATABASE_URL=url, PYTHONPATH=str(ROOT))
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    port = 8790 + os.getpid() % 100
    cmd = [gunicorn, "config.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(args.workers), "--log-level", "warning",
           "--worker-class", "gthread", "--threads", str(args.threads), "--keep-alive", "30"]
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    try:
        for _ in range(300):
            try:
                probe = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                probe.request("GET", "/api/v1/")
                probe.getresponse().read()
                probe.close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit("gunicorn did not come up")
        clients = max(1, min(args.clients, len(tokens)))
        remaining = [max(40, 2 * clients)]  # warm-up: server threads connect and prepare their statements
        lock = threading.Lock()

        def client(k: int) -> None:
            driver = Driver([tokens[k]], args.combined)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

            def call(path: str, token: str, body: bytes) -> tuple[int, bytes]:
                conn.request("POST", path, body=body, headers={
                    "Authorization": f"Token {token}", "Accept": "application/json",
                    "Content-Type": "application/json"})
                response = conn.getresponse()
                return response.status, response.read()

            driver.call = call
            while True:
                with lock:
                    if remaining[0] <= 0:
                        break
                    remaining[0] -= 1
                driver.cycle(0)
            conn.close()

        def run() -> float:
            threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
            began = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return time.perf_counter() - began

        run()
        # CpuMeter (the benchmark's) finds the backends by database name: the test database's here.
        annotate.DB_NAME, saved = db["NAME"], annotate.DB_NAME
        meter = annotate.CpuMeter(server.pid, url)
        remaining[0] = n = args.gunicorn
        meter.start()
        wall = run()
        used = meter.stop()
        annotate.DB_NAME = saved
        print(f"\n== {n} cycles through gunicorn ({args.workers} x {args.threads} gthread), {clients} client(s): "
              f"per cycle gunicorn {1000 * used['gunicorn'] / n:.2f} ms, PostgreSQL {1000 * used['postgres'] / n:.2f} "
              f"ms; {n / wall:.0f} cycles/s")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=300, help="timed next+submit cycles")
    ap.add_argument("--rounds", type=int, default=3, help="the timed cycles in this many rounds (best one shown)")
    ap.add_argument("--profile-cycles", type=int, default=200, help="cycles under cProfile (0: none)")
    ap.add_argument("--warmup", type=int, default=50, help="untimed cycles first (caches, prepared statements)")
    ap.add_argument("--annotators", type=int, default=50)
    ap.add_argument("--combined", action="store_true", help="submits ask for the next task too")
    ap.add_argument("--top", type=int, default=35, help="functions listed per ordering")
    ap.add_argument("--gunicorn", type=int, default=0, metavar="CYCLES",
                    help="also time this many cycles through gunicorn (see --clients)")
    ap.add_argument("--clients", type=int, default=1, help="concurrent clients of the gunicorn pass")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--sort", default="cumulative,tottime", help="pstats orderings, comma-separated")
    ap.add_argument("--callers", default="", help="also list who calls functions matching this pstats pattern")
    args = ap.parse_args()

    os.environ.update(DEBUG="0", DB_CONN_MAX_AGE="600", LOG_LEVEL="WARNING", SECRET_KEY="bench-only")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connection

    named = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        from bench.annotate import seed

        n_tasks = args.warmup + args.cycles + args.profile_cycles + args.gunicorn + 4 * args.annotators + 40
        t0 = time.perf_counter()
        tokens = seed(args.annotators, n_tasks)
        print(f"seeded {args.annotators} annotators, {n_tasks} tasks on {connection.vendor} "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
        driver = Driver(tokens, args.combined)
        for i in range(args.warmup):
            driver.cycle(i)

        per: dict[str, list[float]] = {"next": [], "submit": []}
        rounds = []  # (process CPU, PostgreSQL CPU, wall) per cycle, one entry per round
        size = max(1, args.cycles // args.rounds)
        for r in range(args.rounds):
            pg0, wall0, cpu0 = _pg_backend_cpu(connection), time.perf_counter(), time.process_time()
            for i in range(args.warmup + r * size, args.warmup + (r + 1) * size):
                for kind, cpu in driver.cycle(i).items():
                    per[kind].append(cpu)
            cpu, wall, pg1 = time.process_time() - cpu0, time.perf_counter() - wall0, _pg_backend_cpu(connection)
            rounds.append((1000 * cpu / size, None if pg0 is None else 1000 * (pg1 - pg0) / size, 1000 * wall / size))

        def ms(values: list[float]) -> str:
            if not values:
                return "-"
            values = sorted(values)
            return (f"mean {1000 * sum(values) / len(values):.2f} ms, p50 {1000 * values[len(values) // 2]:.2f}, "
                    f"p90 {1000 * values[int(len(values) * 0.9)]:.2f} (n={len(values)})")

        print(f"\n== {size * args.rounds} cycles{' (combined)' if args.combined else ''}: CPU per request in this process")
        print(f"  next:   {ms(per['next'])}")
        print(f"  submit: {ms(per['submit'])}")
        for k, (cpu, pg, wall) in enumerate(rounds, 1):
            print(f"  round {k}: per cycle Django process {cpu:.2f} ms"
                  + (f", PostgreSQL backend {pg:.2f} ms" if pg is not None else "") + f", wall {wall:.2f} ms")
        best = min(rounds)
        print(f"  best round (least disturbed by other load): Django {best[0]:.2f} ms/cycle"
              + (f", PostgreSQL {min(r[1] for r in rounds):.2f} ms/cycle" if best[1] is not None else ""))

        if args.gunicorn:
            gunicorn_pass(args, tokens)
        start = args.warmup + args.cycles
        if args.profile_cycles:
            profiler = cProfile.Profile(time.process_time)  # CPU, not waits on PostgreSQL
            profiler.enable()
            for i in range(start, start + args.profile_cycles):
                driver.cycle(i)
            profiler.disable()
            stats = pstats.Stats(profiler)
            # Function calls do not depend on the machine's load: a steadier before/after measure than CPU time.
            print(f"\n== cProfile: {stats.total_calls / args.profile_cycles:.0f} Python function calls per cycle, "
                  f"{1000 * stats.total_tt / args.profile_cycles:.1f} ms CPU per cycle under the profiler")
            for order in args.sort.split(","):
                out = io.StringIO()
                stats.stream = out
                print(f"\n== cProfile over {args.profile_cycles} cycles, by {order} (times are totals)")
                stats.sort_stats(order).print_stats(args.top)
                print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))
            if args.callers:
                out = io.StringIO()
                stats.stream = out
                stats.sort_stats("tottime").print_callers(args.callers)
                print(f"\n== callers of {args.callers!r}\n" + out.getvalue())
    finally:
        connection.creation.destroy_test_db(named, verbosity=0)


if __name__ == "__main__":
    main()
