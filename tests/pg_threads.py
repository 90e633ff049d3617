"""Helpers for threaded race tests on PostgreSQL: each thread runs on its own connection, and
one side pauses until the other is seen waiting on a row lock (`pg_stat_activity`)."""
from __future__ import annotations

import threading
import time

from django.db import connection


def waiting_on_a_lock(pid_holder: list, timeout: float = 10) -> bool:
    """Whether the backend whose pid is (soon) in `pid_holder` is, or soon is, waiting on a lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_holder:
            with connection.cursor() as cur:
                cur.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid_holder[0]])
                row = cur.fetchone()
            if row and row[0] == "Lock":
                return True
        time.sleep(0.05)
    return False


def start_thread(target, results: list, i: int) -> threading.Thread:
    """Run `target` in a thread, its result (or the exception it raised) put in results[i]; the
    thread's own database connection is closed at the end."""
    def wrap():
        try:
            results[i] = target()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            results[i] = exc
        finally:
            connection.close()

    t = threading.Thread(target=wrap)
    t.start()
    return t


def backend_pid() -> int:
    """The PostgreSQL backend pid of this thread's connection."""
    return connection.cursor().connection.info.backend_pid
