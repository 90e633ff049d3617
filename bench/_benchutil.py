"""Shared by the benchmark scripts: a fresh database, and the machine facts printed
with every result (so a figure is never read without its context)."""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent


def setup_path() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def fresh_database(url: str | None, var_dir: Path) -> str:
    """A DATABASE_URL for an empty database: a new SQLite file under `var_dir`, or
    the PostgreSQL database named in `url` dropped and created again."""
    if not url or url.startswith("sqlite"):
        return f"sqlite:///{var_dir / 'bench.sqlite3'}"
    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    if not name.startswith(("mathset_bench", "bench_")):
        raise SystemExit(f"refusing to drop {name!r}: benchmark databases must be named mathset_bench_*")
    import psycopg

    admin = parsed._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (the platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts(db_engine: str) -> str:
    """One line: database engine and version, cores, load average, CPU, Python."""
    load = os.getloadavg()
    cpu = cpu_name()
    return (f"machine: db={db_engine}, cores={os.cpu_count()}, load average={load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}, "
            f"cpu={cpu}, python={platform.python_version()}")


def db_engine_description() -> str:
    from django.db import connection

    vendor = connection.vendor
    if vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SHOW server_version")
            return f"PostgreSQL {cur.fetchone()[0]}"
    if vendor == "sqlite":
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"
    return vendor


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds one process has used so far (from /proc); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (from /proc),
    so a benchmark can report CPU per item, which the machine's load does not change much."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, stack, seen = 0.0, [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(c) for c in children)
        except (OSError, IndexError, ValueError):
            continue
    return total


def postgres_backends_cpu_seconds(url: str) -> float | None:
    """CPU seconds used so far by the PostgreSQL backends connected to the database in
    `url` (the server runs on this machine); None for SQLite or when unreadable."""
    if not url or not url.startswith(("postgres://", "postgresql://")):
        return None
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [name])]
    except psycopg.Error:
        return None
    return sum(process_tree_cpu_seconds(pid) for pid in pids)


def postgres_exited_backends_cpu_seconds(url: str) -> float | None:
    """CPU seconds of the PostgreSQL backends that have exited so far, every database's: the
    postmaster's reaped-children time (``cutime + cstime``). A benchmark whose code opens
    short-lived connections (threads) adds the change of this to the live backends' CPU; it
    also counts other databases' connections that close meanwhile, so read it on a quiet
    machine. None for SQLite or when unreadable."""
    if not url or not url.startswith(("postgres://", "postgresql://")):
        return None
    import psycopg

    admin = urlparse(url)._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            postmaster = int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])
        fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    except (psycopg.Error, OSError, IndexError, ValueError):
        return None
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
