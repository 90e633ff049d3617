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

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.utils import CursorDebugWrapper

_STATEMENTS: dict[tuple, str] = {}


def statement(name: str, build) -> str:
    """The SQL `build()` writes, built once per process and database vendor."""
    key = (connection.vendor, name)
    sql = _STATEMENTS.get(key)
    if sql is None:
        sql = _STATEMENTS[key] = build()
    return sql


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
    conn = connections[DEFAULT_DB_ALIAS]  # the proxy `connection` costs a thread-local lookup per use
    convs = _converters(model)
    row = list(values[offset:offset + len(convs)])
    if row[0] is None:
        return None
    for i, (col, fns) in enumerate(convs):
        for fn in fns:
            row[i] = fn(row[i], col, conn)
    return model.from_db(conn.alias, _attnames(model), row)


_ATTNAMES: dict[type, list[str]] = {}


def _attnames(model) -> list[str]:
    names = _ATTNAMES.get(model)
    if names is None:
        names = _ATTNAMES[model] = [f.attname for f in model._meta.concrete_fields]
    return names


def width(model) -> int:
    return len(model._meta.concrete_fields)


_prepared_cursor_class = None


def cursor():
    """A cursor for these statements. On PostgreSQL a server-side-binding psycopg
    cursor that prepares every statement it runs (the settings' `prepare_threshold`
    must not be None, i.e. DB_PREPARED_STATEMENTS on): planning the 3- to 6-table
    joins here costs PostgreSQL about 1 ms each, a prepared one about 0.1 ms. Django's
    own cursors bind client-side and never prepare, so ORM queries are unaffected.
    The cursor goes through Django's wrapper: errors, query logging and
    CaptureQueriesContext behave as for any other query."""
    global _prepared_cursor_class
    conn = connections[DEFAULT_DB_ALIAS]
    if conn.vendor != "postgresql":
        return conn.cursor()
    if _prepared_cursor_class is None:
        import psycopg

        class PreparedCursor(psycopg.Cursor):
            def execute(self, query, params=None, *, prepare=None, binary=None):
                return super().execute(query, params, prepare=True, binary=binary)

        _prepared_cursor_class = PreparedCursor
    conn.close_if_health_check_failed()
    conn.ensure_connection()
    with conn.wrap_database_errors:
        raw = _prepared_cursor_class(conn.connection)
        conn.validate_thread_sharing()
        if conn.queries_logged:
            return _DebugCursor(raw, conn)
        return conn.make_cursor(raw)


class _DebugCursor(CursorDebugWrapper):
    """Logs (DEBUG, CaptureQueriesContext) the statement as written, with its %s
    placeholders: Django reads the executed text back from client-side cursors only."""

    def debug_sql(self, sql=None, params=None, use_last_executed_query=False, many=False):
        return super().debug_sql(sql, params, use_last_executed_query=False, many=many)


def fetch(sql: str, params: Sequence = ()) -> list[tuple]:
    with cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def execute(sql: str, params: Sequence = ()) -> int:
    """Run a write; the number of rows it touched."""
    with cursor() as cur:
        cur.execute(sql, params)
        return cur.rowcount


def insert(model, fields: Sequence[str], rows: Sequence[Sequence], *, returning_id: bool = True) -> list[int]:
    """INSERT rows (already adapted with `dt`/`js`) in one statement; their new ids."""
    returning = returning_id and connection.features.can_return_columns_from_insert
    key = (connection.vendor, "insert", model, tuple(fields), len(rows), returning)
    sql = _STATEMENTS.get(key)
    if sql is None:  # written once per shape: every submit inserts an annotation, a version and its regions
        cols = ", ".join(qn(model._meta.get_field(f).column) for f in fields)
        one = "(" + ", ".join(["%s"] * len(fields)) + ")"
        sql = f"INSERT INTO {table(model)} ({cols}) VALUES {', '.join([one] * len(rows))}"
        if returning:
            sql += f" RETURNING {qn(model._meta.pk.column)}"
        _STATEMENTS[key] = sql
    params = [v for row in rows for v in row]
    with cursor() as cur:
        cur.execute(sql, params)
        if not returning_id:
            return []
        if returning:
            return [r[0] for r in cur.fetchall()]
        assert len(rows) == 1, "without RETURNING only one row's id is known"
        return [cur.lastrowid]


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
