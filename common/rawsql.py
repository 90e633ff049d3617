"""Small helpers for the few hand-written statements on the annotators' hot path.

Why they exist: on the 2-core benchmark box Django's ORM spends 0.6 to 5 ms of CPU
compiling one query (the work-queue candidate query alone: about 5 ms), several
times what PostgreSQL needs to run it. The statements of `tasks/next/` and of a
submit are therefore written once per process from the models' own table and
column names, and run on PostgreSQL and SQLite alike. Rows read here go through
the same converters the ORM applies (datetimes, booleans, JSON), so the model
instances built from them are indistinguishable from ORM-loaded ones.
"""
from __future__ import annotations

from collections.abc import Sequence

from django.db import connection


def qn(name: str) -> str:
    return connection.ops.quote_name(name)


def table(model) -> str:
    return qn(model._meta.db_table)


def columns(model, alias: str) -> str:
    """All concrete columns of `model`, prefixed with a table alias, in field order."""
    return ", ".join(f"{alias}.{qn(f.column)}" for f in model._meta.concrete_fields)


_CONVERTERS: dict[tuple[str, type], list] = {}


def _converters(model) -> list:
    key = (connection.vendor, model)
    found = _CONVERTERS.get(key)
    if found is None:
        found = []
        for field in model._meta.concrete_fields:
            col = field.get_col(model._meta.db_table)
            found.append((col, connection.ops.get_db_converters(col) + col.get_db_converters(connection)))
        _CONVERTERS[key] = found
    return found


def build(model, values: Sequence, offset: int = 0):
    """A `model` instance from `values[offset:]` (its concrete columns, in field order),
    converted exactly as the ORM would; None when the row is absent (a LEFT JOIN miss)."""
    convs = _converters(model)
    row = list(values[offset:offset + len(convs)])
    if row[0] is None:
        return None
    for i, (col, fns) in enumerate(convs):
        for fn in fns:
            row[i] = fn(row[i], col, connection)
    return model.from_db(connection.alias, [f.attname for f in model._meta.concrete_fields], row)


def width(model) -> int:
    return len(model._meta.concrete_fields)


def fetch(sql: str, params: Sequence = ()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def execute(sql: str, params: Sequence = ()) -> int:
    """Run a write; the number of rows it touched."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def insert(model, fields: Sequence[str], rows: Sequence[Sequence], *, returning_id: bool = True) -> list[int]:
    """INSERT rows (already adapted with `dt`/`js`) in one statement; their new ids."""
    cols = ", ".join(qn(model._meta.get_field(f).column) for f in fields)
    one = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = f"INSERT INTO {table(model)} ({cols}) VALUES {', '.join([one] * len(rows))}"
    params = [v for row in rows for v in row]
    with connection.cursor() as cursor:
        if not returning_id:
            cursor.execute(sql, params)
            return []
        if connection.features.can_return_columns_from_insert:
            cursor.execute(sql + f" RETURNING {qn(model._meta.pk.column)}", params)
            return [r[0] for r in cursor.fetchall()]
        assert len(rows) == 1, "without RETURNING only one row's id is known"
        cursor.execute(sql, params)
        return [cursor.lastrowid]


def dt(value):
    """A datetime as the database takes it."""
    return connection.ops.adapt_datetimefield_value(value)


def js(value):
    """A JSON value as the database takes it."""
    return connection.ops.adapt_json_value(value, None)


def lock_skip_locked(alias: str) -> str:
    """`FOR UPDATE OF alias SKIP LOCKED` where the database has row locks (SQLite locks the file)."""
    if connection.features.has_select_for_update_skip_locked and connection.features.has_select_for_update_of:
        return f" FOR UPDATE OF {alias} SKIP LOCKED"
    return ""


def lock(alias: str = "") -> str:
    if connection.features.has_select_for_update:
        return " FOR UPDATE" + (f" OF {alias}" if alias and connection.features.has_select_for_update_of else "")
    return ""


def in_list(values: Sequence) -> str:
    return "(" + ", ".join(["%s"] * len(values)) + ")"
