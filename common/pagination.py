"""Pagination used by every list endpoint: limit/offset, or keyset ("seek") paging by `cursor`.

Limit/offset is the default: ``?limit=&offset=``, answered with ``{count, next, previous, results}``.
Its pages are read in the same total order as cursor pages (the ordering, then the id): with
rows tied on the ordering (``?ordering=created_at`` over a bulk import), PostgreSQL may order
the ties differently for each page, and an offset walk then repeated some rows and missed others.

Keyset paging is opt-in, for clients that walk a whole list (a model team pulling a dataset):
a deep ``offset`` makes the database read and drop every row before it, so walking N rows by
offset costs O(N²); a cursor costs the same at any depth.

- ``?cursor=`` (empty) asks for the first page in cursor mode; every page's ``next`` carries the
  cursor of the page after it (null on the last page). ``limit``, the list's filters and its
  ``ordering`` work as with offsets; ``offset`` cannot be combined with ``cursor``.
- The answer is ``{next, results}``: no ``count`` (counting every matching row on each page is
  itself what is slow at scale) and no ``previous`` (cursors go forward only).
- The cursor is opaque to clients (URL-safe base64 of JSON holding the ordering it was made
  for and the last row's values of that ordering's key). It only narrows the list the user may
  already see, so a crafted one reveals nothing; a malformed one, or one made for another
  ``ordering``, is a 400 naming ``cursor``.

The page is read with a WHERE on the ordering's key, never an OFFSET. The key is the list's
ordering (the ``ordering`` query parameter, the view's or selector's ``order_by``, else the
model's ``Meta.ordering``) made total by the primary key (in the direction of the last term).
NULLs sort where this database puts them for limit/offset (PostgreSQL: last ascending, first
descending; SQLite the other way round) unless the ordering says ``nulls_first``/``nulls_last``,
and the WHERE keeps them: none is skipped or repeated. Orderings a key cannot express (random
order, an annotation, a many-valued relation, a transform such as ``__date``, an expression other
than a field) are a 400 naming ``cursor``: such a list is paged by offset.

Cursors page the viewsets' ``list`` actions, and the extra actions their viewset names in
``cursor_paging_actions``: every extra action that pages does (snapshot items, a job's failures,
evaluation samples, the review queue, an annotation's or a batch's history, a vendor's members). Such an action
pages its queryset through ``self.paginate_queryset`` like a list, in its selector's order (a total
one once the key appends the id). An action left out of that tuple pages by offset only and
neither reads nor documents `cursor`.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import json
import math
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connections
from django.db.models import F, Q, QuerySet
from django.db.models.expressions import OrderBy
from django.utils import timezone
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination as _LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from common.fields import unstorable_char

# Field types whose values a cursor can carry and compare (JSON scalars or ISO text).
_KEYABLE_TYPES = {
    "AutoField", "BigAutoField", "SmallAutoField", "IntegerField", "BigIntegerField", "SmallIntegerField",
    "PositiveIntegerField", "PositiveBigIntegerField", "PositiveSmallIntegerField", "FloatField",
    "DecimalField", "CharField", "TextField", "SlugField", "EmailField", "URLField", "DateField",
    "DateTimeField", "TimeField", "UUIDField", "BooleanField",
}
_INT64 = (-(2**63), 2**63 - 1)
MAX_CURSOR_LENGTH = 4096
_INVALID_CURSOR = "Invalid cursor: start again with an empty `cursor=` and follow the `next` links."


class _Unsupported(Exception):
    """The ordering cannot be expressed as a keyset; the message says which term and why."""


@dataclass(frozen=True)
class _Key:
    path: str  # an ORM path from the listed model: "created_at", "batch__deadline", "pk"
    field: object  # the model field whose values the key holds (a foreign key's target field)
    descending: bool
    nullable: bool
    nulls_after: bool = False  # (nullable keys) NULLs come after every value in the walk's order
    is_pk: bool = False

    @property
    def name(self) -> str:
        name = ("-" if self.descending else "") + self.path
        if self.nullable:
            name += " nulls " + ("last" if self.nulls_after else "first")
        return name

    def order_expression(self):
        expr = F(self.path)
        if not self.nullable:
            return expr.desc() if self.descending else expr.asc()
        nulls = {"nulls_last": True} if self.nulls_after else {"nulls_first": True}
        return expr.desc(**nulls) if self.descending else expr.asc(**nulls)


def _cursor_error(message: str) -> ValidationError:
    return ValidationError({"cursor": [message]})


def _ordering_terms(queryset: QuerySet) -> list:
    query = queryset.query
    if query.extra_order_by:
        raise _Unsupported("an extra() ordering")
    if query.order_by:
        return list(query.order_by)
    if query.default_ordering and not query.group_by:
        # As QuerySet.ordered says: Django leaves Meta.ordering out of GROUP BY queries (an aggregate
        # annotation), so limit/offset pages those unordered; the cursor pages them by primary key.
        return list(queryset.model._meta.ordering)
    return []


def _term_parts(term) -> tuple[str, bool, bool | None]:
    """(name, descending, nulls_after as written or None) of one order_by term."""
    if isinstance(term, str):
        if term == "?":
            raise _Unsupported("random order ('?')")
        descending = term.startswith("-")
        name = term[1:] if descending else term
        if not name or "." in name:
            raise _Unsupported(repr(term))
        return name, descending, None
    if isinstance(term, OrderBy) and isinstance(term.expression, F):
        nulls = None
        if term.nulls_last:
            nulls = True
        elif term.nulls_first:
            nulls = False
        return term.expression.name, term.descending, nulls
    if isinstance(term, F):
        return term.name, False, None
    raise _Unsupported(f"the expression {term}")


def _resolve(queryset: QuerySet, model, term, *, prefix: str = "", flip: bool = False, nullable: bool = False,
             depth: int = 0) -> list[_Key]:
    """The keys one ordering term stands for (a relation with its own Meta.ordering stands for several)."""
    if depth > 5:
        raise _Unsupported("a cycle of related orderings")
    name, descending, nulls_after = _term_parts(term)
    if not isinstance(term, OrderBy):  # as Django expands a relation's Meta.ordering: it keeps an OrderBy as is
        descending ^= flip
    if not prefix and name in queryset.query.annotations:
        raise _Unsupported(f"the annotation {name!r}")
    parts = name.split("__")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        try:
            field = model._meta.pk if part == "pk" else model._meta.get_field(part)
        except FieldDoesNotExist:
            raise _Unsupported(f"{name!r}, which is not a field") from None
        if field.many_to_many or field.one_to_many:
            raise _Unsupported(f"{name!r}, a relation holding many rows per row")
        if field.is_relation and not field.concrete:  # a reverse one-to-one: absent for some rows
            if last:
                raise _Unsupported(f"{name!r}, a reverse relation")
            nullable = True
            model = field.related_model
            continue
        if not last:
            if not field.is_relation:
                raise _Unsupported(f"{name!r}, a lookup or transform")
            nullable = nullable or field.null
            model = field.related_model
            continue
        path = prefix + name
        is_pk = not prefix and len(parts) == 1 and (part == "pk" or field.primary_key)
        if field.is_relation:
            nullable = nullable or field.null
            related_ordering = field.related_model._meta.ordering
            if part == field.name and part != "pk" and related_ordering:
                # As Django does: ordering by a relation orders by the related model's Meta.ordering.
                keys = []
                for sub in related_ordering:
                    keys += _resolve(queryset, field.related_model, sub, prefix=path + "__", flip=descending,
                                     nullable=nullable, depth=depth + 1)
                return keys
            field = field.target_field
        if field.get_internal_type() not in _KEYABLE_TYPES:
            raise _Unsupported(f"{name!r}, a {field.get_internal_type()}")
        nullable = nullable or field.null
        if nullable:
            if nulls_after is None:  # where this database puts NULLs, as the limit/offset pages have them
                nulls_after = connections[queryset.db].features.nulls_order_largest != descending
        else:
            nulls_after = False
        return [_Key(path=path, field=field, descending=descending, nullable=nullable, nulls_after=nulls_after,
                     is_pk=is_pk)]
    raise _Unsupported(repr(term))  # pragma: no cover (an empty name is refused above)


def keyset_keys(queryset: QuerySet) -> list[_Key]:
    """The total order a cursor pages `queryset` by: its ordering, then the primary key."""
    query = queryset.query
    if query.is_sliced or query.combinator or query.distinct_fields:
        raise _Unsupported("a sliced, combined or DISTINCT ON list")
    keys: list[_Key] = []
    for term in _ordering_terms(queryset):
        for key in _resolve(queryset, queryset.model, term):
            if any(k.path == key.path for k in keys):
                continue
            keys.append(key)
            if key.is_pk:  # the order is total already: later terms never decide
                return keys
    pk = queryset.model._meta.pk
    keys.append(_Key(path="pk", field=pk.target_field if pk.is_relation else pk,
                     descending=keys[-1].descending if keys else False, nullable=False, is_pk=True))
    return keys


def _row_value(row, key: _Key):
    """The value of `key` for a row of the page (a model instance)."""
    obj = row
    parts = key.path.split("__")
    for i, part in enumerate(parts):
        if part == "pk":
            return obj.pk
        field = obj._meta.get_field(part)
        if i == len(parts) - 1:
            return getattr(obj, field.attname)
        try:
            obj = getattr(obj, field.name if field.concrete else field.get_accessor_name())
        except ObjectDoesNotExist:
            return None
        if obj is None:
            return None
    return None  # pragma: no cover


def _dump(value):
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    return value


def _load(raw, key: _Key, db: str):
    bad = _cursor_error(_INVALID_CURSOR)
    if raw is None:
        if not key.nullable:
            raise bad
        return None
    if isinstance(raw, str):
        if len(raw) > MAX_CURSOR_LENGTH or unstorable_char(raw) is not None:
            raise bad
    elif isinstance(raw, bool | int):
        if not _INT64[0] <= raw <= _INT64[1]:
            raise bad
    elif isinstance(raw, float):
        if not math.isfinite(raw):
            raise bad
    else:
        raise bad
    try:
        value = key.field.to_python(raw)  # (not its validators: an email or URL stored before one
        if value is None:                  # was enforced must still page; comparing needs no more)
            raise bad
    except (DjangoValidationError, TypeError, ValueError, OverflowError, decimal.InvalidOperation):
        raise bad from None
    if isinstance(value, dt.datetime) and settings.USE_TZ and timezone.is_naive(value):
        raise bad
    if isinstance(value, dt.datetime) and not _askable(value, db):
        raise bad
    if _dump(value) != raw or type(_dump(value)) is not type(raw):
        raise bad  # not a value this pagination wrote: 1.5 for an id, a datetime in another spelling
    return value


def _askable(value: dt.datetime, db: str) -> bool:
    """Whether the database `db` can be asked about a datetime: it must stay one in the connection's
    time zone. SQLite converts it there before asking, and 9999-12-31T23:59:59-14:00 or
    0001-01-01T00:00:00+14:00 overflow (an OverflowError, a 500 where a damaged cursor is a 400);
    no row holds such a value anyway, since each is read back in that zone."""
    zone = connections[db].timezone
    if value.tzinfo is None or zone is None:
        return True
    try:
        value.astimezone(zone)
    except OverflowError:
        return False
    return True


def _after(keys: list[_Key], values: list) -> Q | None:
    """Rows strictly after `values` in the order of `keys` (None: no row can be)."""
    branches = []
    equal = Q()
    for key, value in zip(keys, values, strict=True):
        if value is None:  # only a nullable key holds None
            after = None if key.nulls_after else Q(**{f"{key.path}__isnull": False})
            same = Q(**{f"{key.path}__isnull": True})
        else:
            after = Q(**{f"{key.path}__{'lt' if key.descending else 'gt'}": value})
            if key.nullable and key.nulls_after:
                after |= Q(**{f"{key.path}__isnull": True})
            same = Q(**{key.path: value})
        if after is not None:
            branches.append(equal & after)
        equal &= same
    if not branches:
        return None
    where = branches[0]
    for branch in branches[1:]:
        where |= branch
    first, value = keys[0], values[0]
    if len(keys) > 1 and not first.nullable:
        # Redundant, but lets the planner seek an index on the first key instead of scanning.
        where &= Q(**{f"{first.path}__{'lte' if first.descending else 'gte'}": value})
    return where


def encode_cursor(keys: list[_Key], values: list) -> str:
    payload = json.dumps({"o": [k.name for k in keys], "v": [_dump(v) for v in values]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(token: str, keys: list[_Key], *, db: str) -> list:
    """The values a cursor `token` holds for `keys`, each one the database `db` can be asked about;
    a ValidationError naming `cursor` for any other token."""
    bad = _cursor_error(_INVALID_CURSOR)
    if len(token) > MAX_CURSOR_LENGTH:
        raise bad
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())
    except (binascii.Error, ValueError, UnicodeError, RecursionError):
        raise bad from None
    if not isinstance(payload, dict) or not isinstance(payload.get("o"), list) or not isinstance(payload.get("v"), list):
        raise bad
    if payload["o"] != [k.name for k in keys]:
        raise _cursor_error("This cursor was made for another ordering: keep the `ordering` of the request that "
                            "gave it, or start again with an empty `cursor=`.")
    if len(payload["v"]) != len(keys):
        raise bad
    return [_load(raw, key, db) for raw, key in zip(payload["v"], keys, strict=True)]


def cursor_after(queryset: QuerySet, row) -> str:
    """The `cursor` of the page that follows `row` of `queryset` paged as its list endpoint pages it
    (the image browser's deep links, benchmarks and tests that start deep in a list). A list page
    (common.page_cursor) reads it as its forward token."""
    keys = keyset_keys(queryset)
    return encode_cursor(keys, [_row_value(row, k) for k in keys])


def keyset_order(queryset: QuerySet) -> QuerySet:
    """`queryset` in the total order a cursor pages it by."""
    return queryset.order_by(*(k.order_expression() for k in keyset_keys(queryset)))


class LimitOffsetPagination(_LimitOffsetPagination):
    """Limit/offset pagination, or keyset pagination when the request sends `cursor` (see the module)."""

    default_limit = 50
    max_limit = 1000
    cursor_query_param = "cursor"
    cursor_query_description = (
        "Keyset paging, for walking a whole list fast at any depth: send it empty (`cursor=`) for the first "
        "page, then follow `next`, which carries the next cursor. The answer then holds only `next` and "
        "`results` (no `count`, no `previous`). Works with `limit`, the filters and `ordering`; not with "
        "`offset`. An invalid cursor, or one made for another `ordering`, is a 400.")

    cursor_mode = False
    # The viewset actions that page by cursor on request: the lists. An extra action pages by
    # offset and neither reads nor documents `cursor` unless its viewset names it in
    # `cursor_paging_actions` (opt-in: an action paging a Python list, or in an order a key cannot
    # seek on, would answer every cursor with a 400, and its schema would offer a useless parameter).
    cursor_paging_actions = ("list",)

    def cursor_allowed(self, view) -> bool:
        if view is None or not hasattr(view, "action"):
            return True  # a plain (non-viewset) list view
        return view.action in getattr(view, "cursor_paging_actions", self.cursor_paging_actions)

    def paginate_queryset(self, queryset, request, view=None):
        token = request.query_params.get(self.cursor_query_param) if self.cursor_allowed(view) else None
        self.cursor_mode = token is not None
        if not self.cursor_mode:
            if isinstance(queryset, QuerySet):
                try:  # a total order: rows tied on the ordering otherwise repeat or go missing across pages
                    queryset = keyset_order(queryset)
                except _Unsupported:
                    pass
            return super().paginate_queryset(queryset, request, view)
        self.request = request
        self.limit = self.get_limit(request)
        self.next_cursor = None
        if self.offset_query_param in request.query_params:
            raise _cursor_error("`cursor` and `offset` cannot be combined: page either by cursor or by offset.")
        if not isinstance(queryset, QuerySet):
            raise _cursor_error("Cursor paging is not available for this list; page it with `limit` and `offset`.")
        try:
            keys = keyset_keys(queryset)
        except _Unsupported as exc:
            raise _cursor_error(f"Cursor paging is not available for this list's ordering ({exc}); page it with "
                                "`limit` and `offset`, or choose another `ordering`.") from None
        page_qs = queryset.order_by(*(k.order_expression() for k in keys))  # as keyset_order()
        if token:
            where = _after(keys, decode_cursor(token, keys, db=queryset.db))
            if where is None:
                return []
            page_qs = page_qs.filter(where)
        rows = list(page_qs[: self.limit + 1])
        if len(rows) > self.limit:
            rows = rows[: self.limit]
            self.next_cursor = encode_cursor(keys, [_row_value(rows[-1], k) for k in keys])
        return rows

    def get_paginated_response(self, data):
        if not self.cursor_mode:
            return super().get_paginated_response(data)
        return Response({"next": self.get_next_cursor_link(), "results": data})

    def get_next_cursor_link(self):
        if self.next_cursor is None:
            return None
        url = remove_query_param(self.request.build_absolute_uri(), self.offset_query_param)
        return replace_query_param(url, self.cursor_query_param, self.next_cursor)

    def get_paginated_response_schema(self, schema):
        schema = super().get_paginated_response_schema(schema)
        schema["required"] = ["next", "results"]
        props = schema["properties"]
        props["count"]["description"] = "How many rows match (limit/offset paging; absent when paging by `cursor`)."
        props["next"]["description"] = ("The next page's URL, null on the last one; when paging by `cursor` it "
                                         "carries the next cursor.")
        props["previous"]["description"] = "The previous page's URL (limit/offset paging; absent with `cursor`)."
        return schema

    def get_schema_operation_parameters(self, view):
        if not self.cursor_allowed(view):
            return super().get_schema_operation_parameters(view)
        return [*super().get_schema_operation_parameters(view), {
            "name": self.cursor_query_param,
            "required": False,
            "in": "query",
            "description": self.cursor_query_description,
            "schema": {"type": "string"},
        }]
