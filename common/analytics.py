"""Session settings for read-only aggregate queries over large tables (statistics, progress).

On PostgreSQL, :func:`analytic_reads` runs its block in a transaction with settings local to it:

* ``jit = off``: these queries run once per report; compiling them took ~250 ms of each
  (JIT pays off only for long-running repeated expressions over many more rows);
* ``work_mem``: hash aggregates and sorts over a few hundred thousand groups spilled to disk
  with the 4 MB default; the setting is per operation and ends with the transaction;
* ``max_parallel_workers_per_gather = 0``: on a small shared machine the workers compete with
  the leader for the same cores, and their CPU (separate, short-lived processes) would escape
  the benchmark's CPU accounting;
* ``random_page_cost = 1.1`` (the tables are in memory): with the default 4, looking up a
  sample of 5,000 ids was planned as a sequential scan of every annotation and task.

Elsewhere (SQLite in tests) it is a plain transaction.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction
from django.db.models import Field, ForeignObject, Lookup

WORK_MEM = "64MB"


@contextmanager
def analytic_reads() -> Iterator[None]:
    """A transaction whose PostgreSQL settings suit large read-only aggregates (see module doc)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cur:
                cur.execute(f"SET LOCAL jit = off; SET LOCAL work_mem = '{WORK_MEM}'; "
                            "SET LOCAL random_page_cost = 1.1; SET LOCAL max_parallel_workers_per_gather = 0")
        yield


class AnyOf(Lookup):
    """``field__any_of=[ids]``: ``field = ANY(%s)`` with the list as one array parameter on
    PostgreSQL (a 5,000-id IN list cost ~60 ms of building and binding per query, the array
    ~20 ms); a plain IN list elsewhere."""

    lookup_name = "any_of"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        values = [int(v) for v in self.rhs]
        if connection.vendor == "postgresql":
            return f"{lhs} = ANY(%s)", [*lhs_params, values]
        if not values:
            return "1 = 0", []
        return f"{lhs} IN ({', '.join(['%s'] * len(values))})", [*lhs_params, *values]


Field.register_lookup(AnyOf)
ForeignObject.register_lookup(AnyOf)  # foreign keys keep their own lookup registry
