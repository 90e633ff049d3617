"""Keyset paging for server-rendered list pages, both ways, on the API's cursors.

A page that lists rows newest first (import jobs, takedowns) or deep into a long list (the image
browser) pages with ``?cursor=``, read by a WHERE on the list's key instead of an OFFSET, so a
deep page costs what the first one does. The key and the token are those of the API's keyset
paging (:mod:`common.pagination`): the list's ordering made total by the primary key, and an
opaque URL-safe token holding that ordering's names and the values of one row.

A page also goes backwards: its "previous" token is a cursor made for the *reversed* ordering
(every term's direction flipped, NULLs on the other side), i.e. "the rows after this one when read
the other way round". The ordering's names tell the two apart, so one ``cursor`` parameter serves
both links; a token made for another ordering matches neither and is refused. (One of another
list in the same ordering, e.g. import jobs' on takedowns, is read as a position in this one: it
only narrows this list, so it shows nothing this list would not.)

A token that cannot be read raises :class:`BadCursor` with a message for the page (the view
answers 400 with it and a link to the first page): it is never a 500, and since it only narrows
the queryset the view passed in (the user's selector, filtered), a crafted one shows nothing the
user could not page to anyway.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from django.db.models import QuerySet
from rest_framework.exceptions import ValidationError

from common.pagination import _after, _Key, _row_value, decode_cursor, encode_cursor, keyset_keys

BAD_CURSOR_MESSAGE = ("This page link is not valid (damaged, or made for another list or ordering). "
                      "Start again from the first page.")


class BadCursor(Exception):
    """A `cursor` parameter this list cannot read; `message` is for the page."""

    def __init__(self, message: str = BAD_CURSOR_MESSAGE):
        super().__init__(message)
        self.message = message


@dataclass
class KeysetPage:
    rows: list
    next_cursor: str | None  # the page after this one (older rows on a newest-first list), None on the last
    previous_cursor: str | None  # the page before this one, None on the first
    is_first: bool  # no row comes before this page


def _reversed(key: _Key) -> _Key:
    return replace(key, descending=not key.descending, nulls_after=not key.nulls_after if key.nullable else False)


def _order(queryset: QuerySet, keys: list[_Key]) -> QuerySet:
    return queryset.order_by(*(k.order_expression() for k in keys))


def _token(keys: list[_Key], row) -> str:
    return encode_cursor(keys, [_row_value(row, k) for k in keys])


def _decode(token: str, keys: list[_Key], backward_keys: list[_Key], db: str) -> tuple[bool, list]:
    """(backward, values) of a token: made for the list's ordering (forward) or its reverse (what
    the API refuses as a cursor, e.g. a datetime the database cannot be asked about, is refused)."""
    for backward, candidate in ((False, keys), (True, backward_keys)):
        try:
            return backward, decode_cursor(token, candidate, db=db)
        except ValidationError:
            continue
    raise BadCursor()


def cursor_before(queryset: QuerySet, row) -> str:
    """The token of the page that ends right before `row` of `queryset` (in its ordering)."""
    return _token([_reversed(k) for k in keyset_keys(queryset)], row)


def keyset_page(queryset: QuerySet, *, cursor: str | None, limit: int) -> KeysetPage:
    """One page of `limit` rows of `queryset` (in its ordering, made total by the primary key).

    No `cursor`: the first page. A forward token: the rows after its row; a backward one: the
    `limit` rows before its row, shown in the list's order. A backward page that reaches the
    start of the list (its row was near the top, or rows were deleted since) is the first page,
    read again in full. One query per page (two in that last case); the caller's COUNT, if any,
    is its own.
    """
    keys = keyset_keys(queryset)  # an ordering a key cannot express is the view's bug: let it raise
    backward_keys = [_reversed(k) for k in keys]
    if cursor:
        if not cursor.isascii():
            raise BadCursor()
        backward, values = _decode(cursor, keys, backward_keys, queryset.db)
        where = _after(backward_keys if backward else keys, values)
        if not backward:
            rows = list(_order(queryset, keys).filter(where)[: limit + 1]) if where is not None else []
            has_more = len(rows) > limit
            rows = rows[:limit]
            return KeysetPage(rows=rows, next_cursor=_token(keys, rows[-1]) if has_more else None,
                              previous_cursor=_token(backward_keys, rows[0]) if rows else None, is_first=False)
        rows = list(_order(queryset, backward_keys).filter(where)[: limit + 1]) if where is not None else []
        if len(rows) > limit:
            rows = rows[:limit][::-1]
            return KeysetPage(rows=rows, next_cursor=_token(keys, rows[-1]),
                              previous_cursor=_token(backward_keys, rows[0]), is_first=False)
        # no more than a page before that row: the first page, read again in full
    rows = list(_order(queryset, keys)[: limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    return KeysetPage(rows=rows, next_cursor=_token(keys, rows[-1]) if has_more else None,
                      previous_cursor=None, is_first=True)


def limit_param(request, *, default: int, maximum: int) -> int:
    """The page size asked for by `?limit=`, within 1..`maximum` (`default` when absent or unreadable)."""
    try:
        value = int(request.GET.get("limit", default))
    except (TypeError, ValueError):
        return default
    return max(1, min(maximum, value))


def page_url(request, *, base_path: str | None = None, **changes) -> str:
    """The request's path (or `base_path`) and query string with `changes` applied (None removes a
    parameter): a page link that keeps the list's filters and page size."""
    params = request.GET.copy()
    for name, value in changes.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    query = params.urlencode()
    return (base_path or request.path) + ("?" + query if query else "")


def keyset_page_context(request, queryset: QuerySet, *, limit: int, base_path: str | None = None,
                        params: dict | None = None) -> dict:
    """What a newest-first list page needs: its rows and its links, read from `?cursor=`.

    ``rows``; ``older_url`` / ``newer_url`` (the next and previous pages in the list's order, ""
    when none: on a list read oldest or smallest first they are its "Next" and "Previous");
    ``first_url`` (the first page with the same filters, "" on it); ``cursor_error`` (the message
    for a bad `cursor`, with no rows: the view answers 400). The links go to `base_path` when
    given (a list shown again by a form's POST to another URL), else to the request's path;
    `params` are set in every link (a filter the view chose itself, e.g. a default, so that the
    next page is of the same list even if that default has changed meanwhile).
    """
    def url(**changes) -> str:
        return page_url(request, base_path=base_path, **{**(params or {}), **changes})

    try:
        page = keyset_page(queryset, cursor=request.GET.get("cursor") or None, limit=limit)
    except BadCursor as exc:
        return {"rows": [], "older_url": "", "newer_url": "", "first_url": url(cursor=None),
                "cursor_error": exc.message}
    return {
        "rows": page.rows,
        "older_url": url(cursor=page.next_cursor) if page.next_cursor else "",
        "newer_url": url(cursor=page.previous_cursor) if page.previous_cursor else "",
        "first_url": "" if page.is_first else url(cursor=None),
        "cursor_error": "",
    }


# A newest-first list page (import jobs, takedowns, snapshots, pre-labeling jobs, a snapshot's
# evaluation runs, notifications): rows per page by default and at most (`?limit=`), and the
# sizes its per-page menu offers.
LIST_PAGE_SIZE = 50
MAX_LIST_PAGE_SIZE = 200
LIST_PAGE_SIZES = (25, 50, 100, 200)


def newest_first_page(request, rows: QuerySet, *, counted: bool = True, params: dict | None = None) -> tuple[dict, int]:
    """A newest-first list page's context and status: `rows` by (created_at, id) newest first, a
    page at a time (`?cursor=`, `?limit=`), with what :func:`keyset_page_context` gives, ``limit``,
    ``page_sizes`` and ``count`` (of all `rows` when `counted`, else None; None on a bad link).
    The status is 400 for a page link that cannot be read, else 200. `params` are set in the links.
    """
    limit = limit_param(request, default=LIST_PAGE_SIZE, maximum=MAX_LIST_PAGE_SIZE)
    page = keyset_page_context(request, rows.order_by("-created_at", "-id"), limit=limit, params=params)
    count = rows.count() if counted and not page["cursor_error"] else None
    return ({**page, "limit": limit, "page_sizes": LIST_PAGE_SIZES, "count": count},
            400 if page["cursor_error"] else 200)
