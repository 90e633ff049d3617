"""File responses that a resuming download or a browser's cache can rely on (RFC 9110).

Every endpoint that answers a file (export zips, image files and thumbnails, signed files,
rendered JPEGs) goes through `stored_file_response` (a file in storage) or `bytes_response`
(bytes made for the request). Both give:

- ``Accept-Ranges: bytes``; one range (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``) is a 206
  with ``Content-Range`` and only those bytes. A stored file is read by seeking and streamed
  in chunks of `CHUNK_SIZE` (constant memory, whatever the zip's size). A range that starts
  past the end is a 416 with ``Content-Range: bytes */size``. A malformed Range header, one of
  another unit, or several ranges are ignored: the whole file (RFC 9110 14.2 allows it; no
  multipart/byteranges). Range applies to GET only; HEAD answers as the whole GET would.
- A strong ``ETag`` that changes when the bytes do (the caller's validator, a stored digest
  where there is one, joined to the size), and ``Last-Modified`` where a time is known.
  ``If-None-Match`` / ``If-Modified-Since`` give a 304 without a body, ``If-Match`` /
  ``If-Unmodified-Since`` a 412 (Django's `get_conditional_response`), and ``If-Range`` that
  does not name this very file (another ETag, a weak one, another date) makes a Range
  request a full 200, so that a resume never stitches two different files together.
- HEAD: the GET's headers and Content-Length, no body, and the file is not read.

No middleware of the project rewrites these: there is no GZipMiddleware (which would
compress a 206) nor ConditionalGetMiddleware; CommonMiddleware only adds a Content-Length
to non-streaming responses that lack one.
"""
from __future__ import annotations

import hashlib
import mimetypes
import os
import re
from collections.abc import Iterator
from datetime import datetime

from django.core.files.storage import Storage, default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils.cache import get_conditional_response
from django.utils.http import content_disposition_header, http_date, parse_etags, parse_http_date_safe

__all__ = ["CHUNK_SIZE", "bytes_response", "parse_range", "ranged_responses", "stored_file_response"]

CHUNK_SIZE = 64 * 1024

# One range-spec of the bytes unit; several (a comma) or anything else is not matched.
_RANGE = re.compile(r"\s*bytes\s*=\s*(?:(\d+)\s*-\s*(\d*)|-\s*(\d+))\s*", re.ASCII)


class Unsatisfiable(Exception):
    """The Range names no byte of the representation (a 416)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte that a Range header asks of `size` bytes; None to
    answer the whole file (no header, a malformed one, another unit, several ranges).
    Raises Unsatisfiable when it starts past the end (or asks for the last 0 bytes)."""
    if not header:
        return None
    match = _RANGE.fullmatch(header)
    if match is None:
        return None
    first, last, suffix = match.groups()
    if suffix is not None:
        length = int(suffix)
        if length == 0 or size == 0:
            raise Unsatisfiable
        return max(size - length, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # an invalid range-spec: ignored, like a malformed header
    if start >= size:
        raise Unsatisfiable
    return start, min(end, size - 1)


def _quoted(validator: str, size: int) -> str:
    # The size in the tag too: a file replaced under the same name and digest source never
    # keeps the tag of other bytes (a truncated copy, a re-encoded thumbnail).
    safe = re.sub(r"[^0-9A-Za-z._-]", "-", validator)
    return f'"{safe}-{size:x}"'


def _timestamp(value: datetime | float | None) -> int | None:
    if value is None:
        return None
    return int(value.timestamp() if isinstance(value, datetime) else value)


def _if_range_allows(request: HttpRequest, etag: str, last_modified: int | None) -> bool:
    """Whether a Range may be honoured under the request's If-Range (RFC 9110 13.1.5): only
    when it names this file by its strong ETag or its exact Last-Modified date."""
    value = request.headers.get("If-Range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return not value.startswith("W/") and parse_etags(value) == [etag]
    since = parse_http_date_safe(value)
    return since is not None and last_modified is not None and since == last_modified


def _headers(response: HttpResponseBase, *, etag: str, last_modified: int | None, cache_control: str | None,
             content_type: str, disposition: str | None) -> HttpResponseBase:
    response["Content-Type"] = content_type
    response["Accept-Ranges"] = "bytes"
    response["ETag"] = etag
    if last_modified is not None:
        response["Last-Modified"] = http_date(last_modified)
    if cache_control is not None:
        response["Cache-Control"] = cache_control
    if disposition:
        response["Content-Disposition"] = disposition
    return response


def _ranged(request: HttpRequest | None, *, size: int, etag: str, last_modified: int | None,
            cache_control: str | None, content_type: str, disposition: str | None, full, part) -> HttpResponseBase:
    """The response: conditional (304/412), 416, 206 via `part(first, last)`, HEAD, or the
    whole file via `full()`. `full` and `part` return a response with its body only."""
    def dress(response):
        return _headers(response, etag=etag, last_modified=last_modified, cache_control=cache_control,
                        content_type=content_type, disposition=disposition)

    if request is None:
        return dress(full())
    probe = dress(HttpResponse())
    conditional = get_conditional_response(request, etag=etag, last_modified=last_modified, response=probe)
    if conditional is not probe:
        return conditional  # 304 (with the validators and Cache-Control) or 412
    if request.method == "HEAD":
        probe["Content-Length"] = str(size)  # what the GET would send; servers send no body
        return probe
    wanted = None
    if request.method == "GET" and _if_range_allows(request, etag, last_modified):
        try:
            wanted = parse_range(request.headers.get("Range"), size)
        except Unsatisfiable:
            response = dress(HttpResponse(status=416))
            response["Content-Type"] = "text/plain; charset=utf-8"
            response["Content-Range"] = f"bytes */{size}"
            return response
    if wanted is None:
        return dress(full())
    first, last = wanted
    response = dress(part(first, last))
    response.status_code = 206
    response["Content-Range"] = f"bytes {first}-{last}/{size}"
    response["Content-Length"] = str(last - first + 1)
    return response


def _read(handle, first: int, last: int) -> Iterator[bytes]:
    """Bytes first..last of the open `handle`, by seeking, in chunks of at most CHUNK_SIZE."""
    try:
        handle.seek(first)
        left = last - first + 1
        while left > 0:
            chunk = handle.read(min(CHUNK_SIZE, left))
            if not chunk:
                break  # the file shrank under us: the client sees a short body, never other bytes
            left -= len(chunk)
            yield chunk
    finally:
        handle.close()


def stored_file_response(name: str, *, request: HttpRequest | None = None, content_type: str | None = None,
                         cache_control: str | None = None, etag: str | None = None,
                         last_modified: datetime | float | None = None, disposition: str | None = None,
                         storage: Storage | None = None) -> HttpResponseBase:
    """Serve the stored file `name` (see the module doc); 404 when it is missing from storage.

    `etag`: a validator that changes when the file's bytes do (a stored sha256; the size is
    added); by default one derived from the name, size and modification time. `last_modified`:
    by default the storage's modification time where it knows one. `disposition`: the
    Content-Disposition (by default inline, with the stored file's base name). The content
    type is guessed from the name when not given. Without a `request`, the whole file.
    """
    storage = storage or default_storage
    try:
        handle = storage.open(name, "rb")
    except FileNotFoundError:
        raise Http404("The stored file is missing.") from None
    try:
        size = handle.size
        if last_modified is None or etag is None:
            try:
                modified = storage.get_modified_time(name)
            except (NotImplementedError, OSError):
                modified = None
            if last_modified is None:
                last_modified = modified
            if etag is None:
                stamp = modified.timestamp() if modified else ""
                etag = hashlib.sha256(f"{name}\0{size}\0{stamp}".encode()).hexdigest()[:32]
        content_type = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        if disposition is None:
            disposition = content_disposition_header(False, os.path.basename(name))
        reads_file = False

        def full():
            nonlocal reads_file
            reads_file = True
            # FileResponse: the WSGI server's file wrapper (sendfile) where it has one.
            response = FileResponse(handle, content_type=content_type)
            response.headers.pop("Content-Disposition", None)
            return response

        def part(first: int, last: int):
            nonlocal reads_file
            reads_file = True
            response = StreamingHttpResponse(_read(handle, first, last))
            response._resource_closers.append(handle.close)  # closed even if never iterated
            return response

        response = _ranged(request, size=size, etag=_quoted(etag, size), last_modified=_timestamp(last_modified),
                           cache_control=cache_control, content_type=content_type, disposition=disposition,
                           full=full, part=part)
    except BaseException:
        handle.close()
        raise
    if not reads_file:
        handle.close()  # 304, 412, 416 or HEAD: the file is not read
    return response


def bytes_response(data: bytes, *, request: HttpRequest | None = None, content_type: str,
                   cache_control: str | None = None, etag: str | None = None,
                   last_modified: datetime | float | None = None, disposition: str | None = None) -> HttpResponseBase:
    """Serve `data`, made for this request (a rendered crop or overlay), as `stored_file_response`
    serves a file; the ETag is the sha256 of the bytes unless a validator is given."""
    size = len(data)
    return _ranged(request, size=size, etag=_quoted(etag or hashlib.sha256(data).hexdigest()[:40], size),
                   last_modified=_timestamp(last_modified), cache_control=cache_control,
                   content_type=content_type, disposition=disposition,
                   full=lambda: HttpResponse(data), part=lambda first, last: HttpResponse(data[first:last + 1]))


def ranged_responses(content_type: str) -> dict:
    """The responses an endpoint served by this module adds to its 200, for `extend_schema`:
    206 (a range of `content_type`), 304 (not modified) and 416 (range not satisfiable)."""
    from drf_spectacular.types import OpenApiTypes
    from drf_spectacular.utils import OpenApiResponse

    return {
        (206, content_type): OpenApiResponse(OpenApiTypes.BINARY, description="The bytes of a `Range: bytes=...`"),
        304: OpenApiResponse(description="Not modified (If-None-Match / If-Modified-Since)"),
        416: OpenApiResponse(description="Range not satisfiable; Content-Range: bytes */size"),
    }
