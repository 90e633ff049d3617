"""Storage helpers that never leave an orphan file behind."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.core.files.base import ContentFile, File
from django.core.files.storage import Storage, default_storage

log = logging.getLogger(__name__)

# The innermost guarded block open in this thread (or task), for nested guards.
_open_guards: ContextVar[FileGuard | None] = ContextVar("open_file_guards", default=None)


class FileGuard:
    """Collects the names a write path saved, so they can be removed if it fails."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.names: list[str] = []

    def save(self, name: str, content: bytes | File) -> str:
        """Save `content` as `name` (or a free name like it) and return the name stored.

        A File is streamed to the storage in chunks, not read whole: an upload that Django wrote
        to a temporary file is moved into place by FileSystemStorage."""
        stored = self.storage.save(name, content if isinstance(content, File) else ContentFile(content))
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

    Guards nest: a guarded write called inside another guarded block (an import that ingests
    images, then stores predictions, in one outer transaction) hands the files it saved to the
    enclosing guard when it succeeds, because its rows are only committed with the outer
    transaction: if that one fails later, those files go too.
    """
    guard = FileGuard(storage or default_storage)
    outer = _open_guards.get()
    token = _open_guards.set(guard)
    try:
        yield guard
    except BaseException:
        guard.rollback()
        raise
    finally:
        _open_guards.reset(token)
    if outer is not None and outer.storage is guard.storage:
        outer.names += guard.names

