"""Reading the files of a folder, a zip or a tarball, without extracting anything.

Importers take "a folder or an archive" alike: `iter_members(path, suffixes)` yields
each matching file's name and bytes, streaming (a .tar.xz is read member by member),
and reports a member it cannot read as a `Member` with `error` set instead of
stopping the whole import.
"""
from __future__ import annotations

import os
import tarfile
import zipfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ArchiveError", "Member", "iter_members", "is_archive"]

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2")


class ArchiveError(ValueError):
    """The path itself cannot be read as a folder or an archive."""


@dataclass(frozen=True)
class Member:
    """One file of a folder or archive: its path inside it and its bytes, or why it could not be read."""

    name: str
    data: bytes | None
    error: str = ""


def _wanted(name: str, suffixes: Collection[str] | None) -> bool:
    base = os.path.basename(name)
    if not base or base.startswith("._") or "__MACOSX/" in name:  # macOS resource forks
        return False
    return suffixes is None or os.path.splitext(base)[1].lower() in suffixes


def is_archive(path: Path) -> bool:
    """True for a zip or tar file (by content for zips, by name or content for tars)."""
    path = Path(path)
    if not path.is_file():
        return False
    return zipfile.is_zipfile(path) or path.name.lower().endswith(TAR_SUFFIXES) or tarfile.is_tarfile(path)


def _too_big(size: int, max_bytes: int | None) -> str:
    return f"{size:,} bytes, more than the {max_bytes:,} allowed" if max_bytes is not None and size > max_bytes else ""


def iter_members(path: Path | str, suffixes: Collection[str] | None = None, *,
                 max_bytes: int | None = None) -> Iterator[Member]:
    """Every file under `path` (a folder, recursively, or a zip/tar archive) whose
    suffix is in `suffixes` (lower case, with the dot; None for all), in name order
    for folders and archive order for archives. A member larger than `max_bytes` (by
    its declared size, before anything is read or inflated: a zip bomb never reaches
    memory) is listed with the reason instead of its bytes."""
    path = Path(path)
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            name = str(p.relative_to(path))
            if p.is_file() and _wanted(name.replace(os.sep, "/"), suffixes):
                try:
                    too_big = _too_big(p.stat().st_size, max_bytes)
                    yield Member(name, None, too_big) if too_big else Member(name, p.read_bytes())
                except OSError as exc:
                    yield Member(name, None, f"cannot read: {exc.strerror or exc}")
        return
    if not path.exists():
        raise ArchiveError(f"{path} does not exist.")
    if zipfile.is_zipfile(path):
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ArchiveError(f"{path}: unreadable zip ({exc}).") from None
        with zf:
            for info in zf.infolist():
                if info.is_dir() or not _wanted(info.filename, suffixes):
                    continue
                too_big = _too_big(info.file_size, max_bytes)
                if too_big:
                    yield Member(info.filename, None, too_big)
                    continue
                try:
                    yield Member(info.filename, zf.read(info))
                except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as exc:
                    # A corrupt member (bad CRC, encrypted) is listed; the others still import.
                    yield Member(info.filename, None, f"unreadable zip member: {exc}")
        return
    try:
        tf = tarfile.open(path, mode="r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(f"{path} is neither a folder, a zip nor a tar archive ({exc}).") from None
    with tf:
        try:
            for info in tf:  # streaming: members are decompressed one by one
                if not info.isfile() or not _wanted(info.name, suffixes):
                    continue
                too_big = _too_big(info.size, max_bytes)
                if too_big:
                    yield Member(info.name, None, too_big)
                    continue
                try:
                    handle = tf.extractfile(info)
                    data = handle.read() if handle is not None else None
                except (tarfile.TarError, OSError, EOFError) as exc:
                    # A compressed stream cannot skip a bad member: nothing after it is readable.
                    yield Member(info.name, None, f"truncated or corrupt archive from here on: {exc}")
                    return
                yield Member(info.name, data) if data is not None else Member(info.name, None, "not a regular file")
        except (tarfile.TarError, OSError, EOFError) as exc:
            # A truncated archive: what came before still counts; the rest is one failure.
            yield Member(f"{path.name} (after the last member read)", None, f"truncated or corrupt archive: {exc}")
