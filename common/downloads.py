"""Download responses whose file names and contents survive a Korean team's tools.

- `content_disposition(filename)`: RFC 6266 with both forms, an ASCII ``filename="..."`` for
  tools that read only that one (``curl -OJ``, old clients) and ``filename*=UTF-8''...``
  (RFC 5987) with the real name for browsers. Django's FileResponse gives a non-ASCII name
  only the second form, so ``curl -OJ`` saved a snapshot named "수식 인식" under a made-up name.
- `csv_response(text, filename)`: CSV as UTF-8 *with* a byte-order mark. Excel on a Korean
  Windows reads a CSV without one as CP949, turning every Korean vendor or spec name into
  mojibake; with the BOM it reads UTF-8 (Python reads it back with ``utf-8-sig``).
"""
from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from django.http import HttpResponse

__all__ = ["ascii_fallback", "content_disposition", "csv_response"]

# Never in a saved file name: control characters, quotes, path and shell-special characters.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\/:*?<>|;]')


def ascii_fallback(filename: str, default: str = "download") -> str:
    """`filename` in ASCII: accents dropped, other letters (Hangul) as ``_``, runs of ``_`` folded;
    its suffix kept, and `default` when nothing readable is left of the stem."""
    stem, dot, suffix = filename.rpartition(".") if "." in filename else (filename, "", "")

    def fold(part: str) -> str:
        # é -> e (its accent is a combining mark after NFKD); 수 -> _ (no ASCII spelling)
        part = "".join(c if c.isascii() else "_" for c in unicodedata.normalize("NFKD", part)
                       if unicodedata.category(c) != "Mn")
        return re.sub(r"[_\s]*_[_\s]*", "_", _UNSAFE.sub("_", part))

    stem = fold(stem).strip(" ._-") or default
    suffix = fold(suffix)
    return f"{stem}{dot}{suffix}" if dot else stem


def content_disposition(filename: str, *, attachment: bool = True) -> str:
    """A Content-Disposition value naming `filename` for every client (see module doc)."""
    filename = _UNSAFE.sub("_", unicodedata.normalize("NFC", filename))
    kind = "attachment" if attachment else "inline"
    fallback = ascii_fallback(filename)
    if filename.isascii():
        return f'{kind}; filename="{filename}"'
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def csv_response(text: str, filename: str) -> HttpResponse:
    """`text` as a CSV download, UTF-8 with a byte-order mark so that Excel reads it as UTF-8."""
    response = HttpResponse(("\ufeff" + text).encode("utf-8"), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = content_disposition(filename)
    return response
