"""Benchmark: register 10,000 small generated images through the bulk API endpoint
(`POST /api/v1/images/bulk/`, multipart, 100 files per request, token auth) against
a real gunicorn server on 127.0.0.1, and report images/s. Target on PostgreSQL on
the 2-core machine: at least 200 images/s.

    python bench/ingest.py                    # SQLite (a fresh file in a temporary folder)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mathset_bench_ingest python bench/ingest.py

The script makes a fresh database (a PostgreSQL one named mathset_bench_* is dropped
and created again), migrates, creates a curator with a token, a spec and a source,
starts gunicorn (`--workers`, default 3), sends the requests from `--clients`
threads, checks every answer, stops the server and prints one result line with
the machine facts. Options: --images, --per-request, --workers, --clients, --port.
Generating the images happens before the clock starts.
"""
from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchutil import (  # noqa: E402
    ROOT,
    db_engine_description,
    fresh_database,
    machine_facts,
    postgres_backends_cpu_seconds,
    process_tree_cpu_seconds,
    setup_path,
)

TARGET = 200.0


def make_images(count: int) -> list[tuple[str, bytes]]:
    """Small distinct PNGs (a formula-like text and a line; every one differs)."""
    from PIL import Image, ImageDraw

    out = []
    for i in range(count):
        img = Image.new("L", (160, 48), 255)
        draw = ImageDraw.Draw(img)
        draw.text((6, 16), f"x^{i % 97}+{i // 97}={i}", fill=0)
        draw.line((0, i % 48, 159, (i * 7) % 48), fill=(i * 37) % 200, width=1)
        buf = io.BytesIO()
        img.save(buf, "PNG", compress_level=3)
        out.append((f"bench-{i:05d}.png", buf.getvalue()))
    return out


def prepare(args) -> tuple[dict, dict]:
    """Fresh database, migrations, curator + token, spec, source; the server's env."""
    var = Path(tempfile.mkdtemp(prefix="mathset-bench-ingest-"))
    env = dict(os.environ)
    env.update({
        "MATHSET_VAR_DIR": str(var), "MEDIA_ROOT": str(var / "media"), "DEBUG": "0", "LOG_LEVEL": "WARNING",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only"),
        "DATABASE_URL": fresh_database(os.environ.get("DATABASE_URL"), var),
        "DJANGO_SETTINGS_MODULE": "config.settings", "DB_CONN_MAX_AGE": "60",
    })
    os.environ.update(env)
    setup_path()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from common import roles
    from common.services import api_token_rotate, user_create
    from curation.models import Licence
    from curation.services import source_create, spec_create

    call_command("migrate", verbosity=0)
    curator = user_create(username="bench-curator", password="bench-pass-123", role=roles.CURATOR)
    token = api_token_rotate(user=curator).key
    spec = spec_create(name="Ingest bench", requirement="Benchmark", intended_use="commercial",
                       answer_formats=["latex"], created_by=curator)
    source = source_create(name="Bench images", kind="in_house", licence=Licence.objects.get(code="cc0-1.0"),
                           copyright_holder="Mathset bench", created_by=curator)
    facts = machine_facts(db_engine_description())
    connection.close()
    return env, {"token": token, "spec": spec.id, "source": source.id, "facts": facts, "var": var}


def wait_ready(base: str, token: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    import requests

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode}")
        try:
            if requests.get(f"{base}/api/v1/licences/?limit=1", headers={"Authorization": f"Token {token}"},
                            timeout=10).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise SystemExit("gunicorn did not answer within 60 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--per-request", type=int, default=100)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()

    import requests

    env, ctx = prepare(args)
    images = make_images(args.images)
    batches = [images[i:i + args.per_request] for i in range(0, len(images), args.per_request)]
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    proc = subprocess.Popen(
        [gunicorn, "config.wsgi", "-w", str(args.workers), "-b", f"127.0.0.1:{args.port}", "--timeout", "120",
         "--log-level", "warning"], cwd=ROOT, env=env, start_new_session=True,
    )
    base = f"http://127.0.0.1:{args.port}"
    errors: list[str] = []
    created = [0]
    lock = threading.Lock()
    next_batch = iter(range(len(batches)))

    def client() -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {ctx['token']}"
        while True:
            with lock:
                index = next(next_batch, None)
            if index is None:
                return
            files = [("files", (name, data, "image/png")) for name, data in batches[index]]
            data = {"spec": ctx["spec"], "source": ctx["source"], "categories": "printed"}
            r = session.post(f"{base}/api/v1/images/bulk/", files=files, data=data, timeout=300)
            with lock:
                if r.status_code != 201:
                    errors.append(f"batch {index}: HTTP {r.status_code} {r.text[:200]}")
                else:
                    created[0] += len(r.json()["created"])

    try:
        wait_ready(base, ctx["token"], proc)
        load_before = os.getloadavg()[0]
        server_cpu = process_tree_cpu_seconds(proc.pid)
        client_cpu = time.process_time()
        started = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        server_cpu = process_tree_cpu_seconds(proc.pid) - server_cpu
        # Backends live as long as the workers' persistent connections: read them before stopping.
        db_cpu = postgres_backends_cpu_seconds(env["DATABASE_URL"])
        client_cpu = time.process_time() - client_cpu
        listed = requests.get(f"{base}/api/v1/images/?spec={ctx['spec']}&limit=1",
                              headers={"Authorization": f"Token {ctx['token']}"}, timeout=30).json()["count"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server this script started, and its workers
        proc.wait(timeout=30)
    rate = created[0] / elapsed
    verdict = "OK" if rate >= TARGET else "BELOW TARGET"
    print(f"ingest: {created[0]} images registered ({listed} listed by the API) in {elapsed:.1f} s = {rate:.1f} images/s "
          f"through POST /api/v1/images/bulk/ ({args.per_request} files/request, {args.workers} gunicorn workers, "
          f"{args.clients} client threads; target >= {TARGET:.0f}/s on PostgreSQL: {verdict})")
    per_image_ms = 1000 * server_cpu / max(created[0], 1)
    db_ms = 1000 * db_cpu / max(created[0], 1) if db_cpu is not None else 0.0
    db_note = (f"PostgreSQL backends {db_cpu:.1f} s = {db_ms:.2f} ms/image" if db_cpu is not None
               else "SQLite runs inside the workers")
    total_ms = per_image_ms + db_ms
    print(f"CPU: web workers {server_cpu:.1f} s = {per_image_ms:.2f} ms/image, {db_note}, client {client_cpu:.1f} s; "
          f"so {os.cpu_count()} idle cores could serve about {os.cpu_count() * 1000 / total_ms:.0f} images/s; "
          f"load average {load_before:.2f} at start")
    print(ctx["facts"])
    for e in errors[:10]:
        print("error:", e)
    return 0 if not errors and listed == args.images else 1


if __name__ == "__main__":
    sys.exit(main())
