"""Size limits on uploaded files, applied while a multipart body streams in.

Django writes every file part of a request whole to a temporary file (or to memory) before any view
code runs, so a view that compares ``upload.size`` with its limit refuses a 5 GB file only after
5 GB were written to disk. A view that calls `limit_upload_sizes` before the body is parsed puts a
`StreamingSizeLimit` first among the request's upload handlers instead:

- a request whose Content-Length is more than its files and other fields may add up to is refused
  before any of its body is read;
- a file part that grows past the limit is passed on no further: what Django's handlers had kept of
  it (at most the limit) is deleted at once, the rest of the part is only counted (so that the 400
  says the file's size), and the parts after it are read but not stored;
- with a limit on what all the file parts add up to (`max_total_bytes`: a bulk upload of many files
  each within the limit), the part that takes the running total past it is refused the same way. The
  parts before it stay in their temporary files (at most the total) until Django closes the request;
- the view then calls `raise_if_refused`, which raises the ValidationError naming the field (a 400).

The rest of a refused body is still read (StopUpload without connection_reset): an HTTP client
that is still sending when the server answers and closes usually reports a reset connection, not
the 400. The Content-Length limit bounds what is read that way.

A view that is not a DRF view must call `limit_upload_sizes` before CsrfViewMiddleware reads
``request.POST`` (Django's docs: csrf_exempt on the view, csrf_protect around the part that reads it).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest, QueryDict
from django.utils.datastructures import MultiValueDict

# Boundaries and part headers, on top of the files and the other fields' data: a few hundred bytes
# a part, and Django takes at most DATA_UPLOAD_MAX_NUMBER_FIELDS (1,000) fields.
FORM_OVERHEAD_BYTES = 1024 * 1024


def too_big(*, size: int, limit: int) -> str:
    """The message for a file of `size` bytes over `limit`: both sizes, the limit also in MB."""
    return f"the file is {size:,} bytes; at most {limit:,} bytes ({limit // 2**20} MB) are accepted"


@dataclass
class Refusal:
    """A file part, or the whole body, over its limit, as the 400 names it."""

    field: str
    size: int  # of the file part, or of the body (its Content-Length) when `body_limit` is set
    limit: int  # per file
    file_name: str = ""
    index: int = 0  # of the part among the parts of its field (a list of files)
    # False while a file part is still streaming in, or when the body ended within it: `size` is
    # then only what was received of it
    complete: bool = True
    body_limit: int | None = None
    max_files: int = 1
    # What all the file parts may add up to, when limited. Without `body_limit`, the refusal is of the
    # part that took the total past it, and `size` is the total received up to the end of that part.
    total_limit: int | None = None

    def message(self) -> str:
        if self.body_limit is not None:
            in_all = "" if self.total_limit is None else f", at most {self.total_limit:,} bytes in all"
            return (f"the request is {self.size:,} bytes; at most {self.body_limit:,} bytes are accepted "
                    f"({self.max_files} file(s) of at most {self.limit:,} bytes ({self.limit // 2**20} MB) each"
                    f"{in_all}, and the other fields)")
        if self.total_limit is not None:
            # "at least": the parts after this one are not read
            return (f"the files sent add up to at least {self.size:,} bytes; at most {self.total_limit:,} bytes "
                    f"({self.total_limit // 2**20} MB) are accepted in one request: send them in several")
        if not self.complete:
            return f"the file is more than {self.size:,} bytes; at most {self.limit:,} bytes are accepted"
        return too_big(size=self.size, limit=self.limit)


class StreamingSizeLimit(FileUploadHandler):
    """An upload handler, first in the chain, that passes each file part on to Django's handlers
    only up to `max_file_bytes` (and while all of them add up to at most `max_total_bytes`), and
    refuses a body longer than `max_body_bytes` unread.

    What it refused is kept in `refusal`; `raise_if_refused` turns it into the 400."""

    def __init__(self, request: HttpRequest | None = None, *, max_file_bytes: int, max_body_bytes: int | None,
                 body_field: str, max_files: int, max_total_bytes: int | None = None) -> None:
        super().__init__(request)
        self.max_file_bytes = max_file_bytes
        self.max_body_bytes = max_body_bytes
        self.max_total_bytes = max_total_bytes
        self.body_field = body_field
        self.max_files = max_files
        self.refusal: Refusal | None = None
        self._over = False
        self._over_total = False  # the part that is over took the total past max_total_bytes
        self._total = 0  # bytes of all file parts received so far
        self._parts: dict[str, int] = {}  # file parts received per field

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if self.max_body_bytes is not None and content_length > self.max_body_bytes:
            self.refusal = Refusal(field=self.body_field, size=content_length, limit=self.max_file_bytes,
                                   body_limit=self.max_body_bytes, max_files=self.max_files,
                                   total_limit=self.max_total_bytes)
            # parsed as an empty form: no part is read, nothing is stored
            return QueryDict(encoding=encoding), MultiValueDict()
        return None

    def new_file(self, field_name, *args, **kwargs) -> None:
        super().new_file(field_name, *args, **kwargs)
        self._over = False
        self._parts[field_name] = self._parts.get(field_name, 0) + 1

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        received = start + len(raw_data)
        self._total += len(raw_data)
        if not self._over:
            over_file = received > self.max_file_bytes
            over_total = self.max_total_bytes is not None and self._total > self.max_total_bytes
            if over_file or over_total:
                # a file over its own limit is named as such, even when it also ends the total
                self._over, self._over_total = True, not over_file
                self._drop_partial_files()
        if self._over:
            # counted, not kept: None stops the chunk before the handlers that store it
            self.refusal = self._refusal(received, complete=False)
            return None
        return raw_data

    def file_complete(self, file_size: int):
        if self._over:
            self.refusal = self._refusal(file_size, complete=True)
            # the later parts are read and dropped; Django closes the handlers' files again (a no-op)
            raise StopUpload(connection_reset=False)
        return None  # the next handler returns the file

    def _refusal(self, size: int, *, complete: bool) -> Refusal:
        if self._over_total:
            return Refusal(field=self.field_name, size=self._total, limit=self.max_file_bytes, complete=complete,
                           file_name=self.file_name, index=self._parts[self.field_name] - 1,
                           total_limit=self.max_total_bytes)
        return Refusal(field=self.field_name, size=size, limit=self.max_file_bytes, complete=complete,
                       file_name=self.file_name, index=self._parts[self.field_name] - 1)

    def _drop_partial_files(self) -> None:
        # Django's MultiPartParser._close_files does the same on StopUpload, by the same convention
        # (a handler keeps the file it is writing as `file`); a TemporaryUploadedFile deletes its
        # temporary file when closed. Done here so the partial file is gone while the rest of the
        # part streams in, not once it has.
        for handler in getattr(self.request, "upload_handlers", ()):
            if handler is not self and hasattr(handler, "file"):
                handler.file.close()


def limit_upload_sizes(request: HttpRequest, *, max_file_bytes: int, file_fields: Sequence[str],
                       max_files: int | None = None, max_total_bytes: int | None = None) -> StreamingSizeLimit:
    """Refuse `request`'s file parts over `max_file_bytes` while they stream in (see the module
    docstring). Call it before anything reads the body (DRF: in ``initialize_request``, before
    authentication, whose CSRF check reads ``request.POST``, as `UploadLimitsMixin` does); Django raises AttributeError after.

    `file_fields` are the form's file fields: a body refused whole names the only one, or ``file``.
    `max_files` (default: one per field) sizes the body limit: that many files of at most
    `max_file_bytes`, DATA_UPLOAD_MAX_MEMORY_SIZE of other fields, and FORM_OVERHEAD_BYTES; no body
    limit when DATA_UPLOAD_MAX_MEMORY_SIZE is None (other fields then have none either).
    `max_total_bytes`, if given, is what all the file parts may add up to: the part that takes the
    running total past it is refused, and the body limit is at most that total plus the other fields
    and FORM_OVERHEAD_BYTES."""
    max_files = len(file_fields) if max_files is None else max_files
    other = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    files = max_file_bytes * max_files if max_total_bytes is None else min(max_file_bytes * max_files, max_total_bytes)
    max_body = None if other is None else files + other + FORM_OVERHEAD_BYTES
    handler = StreamingSizeLimit(request, max_file_bytes=max_file_bytes, max_body_bytes=max_body,
                                 body_field=file_fields[0] if len(file_fields) == 1 else "file", max_files=max_files,
                                 max_total_bytes=max_total_bytes)
    request.upload_handlers = [handler, *request.upload_handlers]
    return handler


class UploadLimitsMixin:
    """For a DRF view whose actions take files: `upload_limits` gives `limit_upload_sizes`'s
    keyword arguments for the action being answered (None: no limit), applied in
    ``initialize_request``, where DRF has set ``self.action`` and nothing has read the body yet
    (authentication does next: SessionAuthentication's CSRF check reads ``request.POST``). The
    action then calls `raise_if_refused` or `refusal_of`."""

    def upload_limits(self) -> dict | None:
        return None

    def initialize_request(self, request, *args, **kwargs):
        drf_request = super().initialize_request(request, *args, **kwargs)  # sets self.action
        limits = self.upload_limits()
        if limits is not None:
            limit_upload_sizes(request, **limits)
        return drf_request


def refusal_of(request) -> Refusal | None:
    """What `limit_upload_sizes` refused of `request`'s body, if anything (a Django or a DRF
    request; its body is parsed here if nothing did yet)."""
    request.POST  # noqa: B018 - parses the body, through the limit, if nothing did yet
    for handler in request.upload_handlers:
        if isinstance(handler, StreamingSizeLimit) and handler.refusal is not None:
            return handler.refusal
    return None


def raise_if_refused(request) -> None:
    """Raise ValidationError({field: both sizes}) if `limit_upload_sizes` refused part of
    `request`'s body (see `refusal_of`)."""
    refused = refusal_of(request)
    if refused is not None:
        raise ValidationError({refused.field: refused.message()})
