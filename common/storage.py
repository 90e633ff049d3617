"""Storage helpers that never leave an orphan file behind."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.files.base import ContentFile
from django.core.files.storage import Storage, default_storage

log = logging.getLogger(__name__)


class FileGuard:
    """Collects the names a write path saved, so they can be removed if it fails."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.names: list[str] = []

    def save(self, name: str, content: bytes) -> str:
        stored = self.storage.save(name, ContentFile(content))
        self.names.append(stored)
        return stored

    def rollback(self) -> None:
        for name in self.names:
            try:
                self.storage.delete(name)
            except Exception:  # pragma: no cover - best effort cleanup
                log.exception("could not delete %s after a failed write", name)
        self.names.clear()


@contextmanager
def guarded_files(storage: Storage | None = None) -> Iterator[FileGuard]:
    """Yield a FileGuard; every file it saved is deleted if the block raises.

    Wrap the database transaction inside this block: if the rows are not
    committed, the files go too, so no orphan file outlives a failed ingest.
    """
    guard = FileGuard(storage or default_storage)
    try:
        yield guard
    except BaseException:
        guard.rollback()
        raise


def stored_file_response(name: str, *, content_type: str | None = None, cache_control: str):
    """Stream the stored file `name` (content type guessed from its name when not given);
    404 when the file is missing from storage."""
    import mimetypes

    from django.http import FileResponse, Http404

    try:
        handle = default_storage.open(name, "rb")
    except FileNotFoundError:
        raise Http404("The stored file is missing.") from None
    response = FileResponse(handle, content_type=content_type or mimetypes.guess_type(name)[0]
                            or "application/octet-stream")
    response["Cache-Control"] = cache_control
    return response
