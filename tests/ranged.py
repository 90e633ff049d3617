"""One check of what a resuming or caching HTTP client meets at a file endpoint (see
common/http_files.py): byte ranges, validators, conditional requests and HEAD."""
from __future__ import annotations

from django.utils.http import http_date, parse_http_date


def body_of(resp) -> bytes:
    return b"".join(resp.streaming_content) if resp.streaming else resp.content


def assert_serves_ranges(client, url: str, whole: bytes | None = None, **extra) -> bytes:
    """Walk `url` as curl -C -, a browser's cache and wget -c would; return the whole body."""
    full = client.get(url, **extra)
    assert full.status_code == 200, (full.status_code, url)
    body = body_of(full)
    if whole is not None:
        assert body == whole
    size = len(body)
    assert size > 20
    assert full["Accept-Ranges"] == "bytes"
    assert int(full["Content-Length"]) == size
    etag = full["ETag"]
    assert etag.startswith('"') and etag.endswith('"'), etag  # strong
    kept = {h: full[h] for h in ("Content-Type", "Cache-Control", "Content-Disposition") if full.has_header(h)}

    # A resumed download (`curl -C -`, `wget -c`): the rest, joined to what came first, is the file.
    n = size // 3
    rest = client.get(url, HTTP_RANGE=f"bytes={n}-", HTTP_ACCEPT_ENCODING="gzip, br", **extra)
    assert rest.status_code == 206
    assert "Content-Encoding" not in rest  # no middleware compresses a range (the offsets are of the file)
    assert rest["Content-Range"] == f"bytes {n}-{size - 1}/{size}"
    assert int(rest["Content-Length"]) == size - n
    assert body[:n] + body_of(rest) == body
    assert rest["ETag"] == etag and rest["Accept-Ranges"] == "bytes"
    assert {h: rest[h] for h in kept} == kept  # the same type, cache policy and file name

    first = client.get(url, HTTP_RANGE="bytes=0-9", **extra)
    assert first.status_code == 206 and body_of(first) == body[:10]
    assert first["Content-Range"] == f"bytes 0-9/{size}"
    past_end = client.get(url, HTTP_RANGE=f"bytes={size - 5}-{size + 100}", **extra)  # the end is clamped
    assert past_end.status_code == 206 and body_of(past_end) == body[-5:]

    suffix = client.get(url, HTTP_RANGE="bytes=-10", **extra)
    assert suffix.status_code == 206 and body_of(suffix) == body[-10:]
    assert suffix["Content-Range"] == f"bytes {size - 10}-{size - 1}/{size}"
    longer = client.get(url, HTTP_RANGE=f"bytes=-{size + 50}", **extra)  # more than there is: all of it
    assert longer.status_code == 206 and body_of(longer) == body

    for unsatisfiable in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        resp = client.get(url, HTTP_RANGE=unsatisfiable, **extra)
        assert resp.status_code == 416, unsatisfiable
        assert resp["Content-Range"] == f"bytes */{size}"

    # Malformed or several ranges: ignored, the whole file (RFC 9110 14.2; no multipart/byteranges).
    for ignored in ("bytes=abc", "bytes=9-2", "bytes=", "bytes=-", "items=0-5", "bytes=0-1,4-5", "0-5",
                    "bytes=1-2-3", "bytes=+1-2"):
        resp = client.get(url, HTTP_RANGE=ignored, **extra)
        assert resp.status_code == 200, ignored
        assert body_of(resp) == body and "Content-Range" not in resp

    # Caches: a matching If-None-Match is a 304 without a body, keeping the validators.
    cached = client.get(url, HTTP_IF_NONE_MATCH=etag, **extra)
    assert cached.status_code == 304 and body_of(cached) == b""
    assert cached["ETag"] == etag
    assert client.get(url, HTTP_IF_NONE_MATCH='W/"something-else"', **extra).status_code == 200
    if full.has_header("Last-Modified"):
        since = client.get(url, HTTP_IF_MODIFIED_SINCE=full["Last-Modified"], **extra)
        assert since.status_code == 304
        earlier = http_date(parse_http_date(full["Last-Modified"]) - 3600)
        assert client.get(url, HTTP_IF_MODIFIED_SINCE=earlier, **extra).status_code == 200

    # If-Range: resume only while the file is the one the first part came from.
    other = client.get(url, HTTP_RANGE=f"bytes={n}-", HTTP_IF_RANGE='"another-file"', **extra)
    assert other.status_code == 200 and body_of(other) == body
    weak = client.get(url, HTTP_RANGE=f"bytes={n}-", HTTP_IF_RANGE=f"W/{etag}", **extra)
    assert weak.status_code == 200  # a weak validator never matches for a range
    same = client.get(url, HTTP_RANGE=f"bytes={n}-", HTTP_IF_RANGE=etag, **extra)
    assert same.status_code == 206 and body_of(same) == body[n:]
    if full.has_header("Last-Modified"):
        dated = client.get(url, HTTP_RANGE=f"bytes={n}-", HTTP_IF_RANGE=full["Last-Modified"], **extra)
        assert dated.status_code == 206

    head = client.head(url, **extra)
    assert head.status_code == 200 and body_of(head) == b""
    assert int(head["Content-Length"]) == size and head["ETag"] == etag
    assert head["Accept-Ranges"] == "bytes"
    assert {h: head[h] for h in kept} == kept
    return body
