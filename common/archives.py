"""Reading the files of a folder, a zip or a tarball, without extracting anything.

Importers take "a folder or an archive" alike: `iter_members(path, suffixes)` yields
each matching file's name and bytes, streaming (a .tar.xz is read member by member),
and reports a member it cannot read as a `Member` with `error` set instead of
stopping the whole import.

Names come out as people typed them (`zip_member_name`, `nfc`): a zip made by Windows'
own "Send to > Compressed folder" on a Korean system (and by many Korean tools) stores
its names in CP949 without the zip's UTF-8 flag, which Python reads as CP437 mojibake
("ìêìê" for "수식"); macOS stores decomposed Hangul (NFD jamo) that compares unequal
to what a keyboard types. Every name is therefore decoded as what it really is and
composed to NFC.
"""
from __future__ import annotations

import os
import struct
import tarfile
import unicodedata
import zipfile
import zlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ArchiveError", "Member", "iter_members", "is_archive", "nfc", "zip_member_name"]

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2")


class ArchiveError(ValueError):
    """The path itself cannot be read as a folder or an archive."""


@dataclass(frozen=True)
class Member:
    """One file of a folder or archive: its path inside it and its bytes, or why it could not be read."""

    name: str
    data: bytes | None
    error: str = ""


def nfc(name: str) -> str:
    """`name` in Unicode NFC: macOS file names hold Hangul (and accents) decomposed, which
    would compare unequal to the same name typed on a keyboard."""
    return unicodedata.normalize("NFC", name)


_UNICODE_PATH_EXTRA = 0x7075  # Info-ZIP Unicode Path Extra Field (7-Zip, Info-ZIP, Bandizip)


def _unicode_path_extra(info: zipfile.ZipInfo, raw: bytes) -> str | None:
    """The UTF-8 name of the Info-ZIP Unicode Path field, when it belongs to this very name
    (its CRC-32 is the CRC of the raw name it stands for)."""
    extra, i = info.extra or b"", 0
    while i + 4 <= len(extra):
        tag, size = struct.unpack("<HH", extra[i:i + 4])
        body = extra[i + 4:i + 4 + size]
        if tag == _UNICODE_PATH_EXTRA and len(body) >= 5 and body[0] == 1:
            if struct.unpack("<L", body[1:5])[0] == zlib.crc32(raw):
                try:
                    return body[5:].decode("utf-8")
                except UnicodeDecodeError:
                    return None
        i += 4 + size
    return None


def _decode_legacy_name(raw: bytes) -> str | None:
    """A name stored without an encoding: UTF-8 when its bytes are valid UTF-8 (macOS
    Archive Utility, Linux), else CP949 (Korean Windows), else None."""
    for encoding in ("utf-8", "cp949"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def zip_member_name(info: zipfile.ZipInfo) -> str:
    """The name of a zip member as it was meant, in NFC.

    Names flagged UTF-8 (bit 11) are taken as they are. Without the flag the zip format says
    CP437, which is what Python decodes; but Korean Windows writes CP949 there and macOS
    writes UTF-8, so the raw bytes are read again: the Unicode Path extra field when it
    matches, else UTF-8 when they are valid UTF-8, else CP949 when they are valid CP949,
    else CP437 after all. ASCII names are the same in all of them."""
    name = info.filename
    if not info.flag_bits & 0x800 and not name.isascii():
        try:
            raw = info.orig_filename.encode("cp437")
        except UnicodeEncodeError:  # not decoded as CP437 (a caller's metadata_encoding): keep it
            raw = None
        if raw is not None:
            fixed = _unicode_path_extra(info, raw) or _decode_legacy_name(raw)
            if fixed is not None:
                name = fixed
    return nfc(name)


def _tar_member_name(name: str) -> str:
    """A tar member's name in NFC; bytes that were not UTF-8 (kept by tarfile as surrogate
    escapes) are read as CP949 when they are that."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        fixed = _decode_legacy_name(name.encode("utf-8", "surrogateescape"))
        if fixed is not None:
            name = fixed
    return nfc(name)


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
            name = nfc(str(p.relative_to(path)))
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
                name = zip_member_name(info)
                if info.is_dir() or not _wanted(name, suffixes):
                    continue
                too_big = _too_big(info.file_size, max_bytes)
                if too_big:
                    yield Member(name, None, too_big)
                    continue
                try:
                    yield Member(name, zf.read(info))
                except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as exc:
                    # A corrupt member (bad CRC, encrypted) is listed; the others still import.
                    yield Member(name, None, f"unreadable zip member: {exc}")
        return
    try:
        tf = tarfile.open(path, mode="r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(f"{path} is neither a folder, a zip nor a tar archive ({exc}).") from None
    with tf:
        try:
            for info in tf:  # streaming: members are decompressed one by one
                name = _tar_member_name(info.name)
                if not info.isfile() or not _wanted(name, suffixes):
                    continue
                too_big = _too_big(info.size, max_bytes)
                if too_big:
                    yield Member(name, None, too_big)
                    continue
                try:
                    handle = tf.extractfile(info)
                    data = handle.read() if handle is not None else None
                except (tarfile.TarError, OSError, EOFError) as exc:
                    # A compressed stream cannot skip a bad member: nothing after it is readable.
                    yield Member(name, None, f"truncated or corrupt archive from here on: {exc}")
                    return
                yield Member(name, data) if data is not None else Member(name, None, "not a regular file")
        except (tarfile.TarError, OSError, EOFError) as exc:
            # A truncated archive: what came before still counts; the rest is one failure.
            yield Member(f"{path.name} (after the last member read)", None, f"truncated or corrupt archive: {exc}")
