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

