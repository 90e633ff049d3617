"""Which addresses an external HTTP model may be reached at.

Workers POST to a model team's `endpoint_url` and show the team part of what comes back
(an error status's text), so the URL must not become a way into the workers' own network.
Two rules:

- never a cloud metadata service (169.254.169.254 and the rest of the link-local ranges,
  fd00:ec2::254, 100.100.100.200; also as IPv4-mapped or 6to4 IPv6 addresses), nor a multicast,
  unspecified or reserved address: no model lives there;
- where `MATHSET_MODEL_HOSTS` is set (production should set it), only the hosts it lists:
  a name (`models.lab.example`), every name under a domain (`.lab.example`), or an address
  or network (`10.20.0.0/16`). Unset or `*`, any other host, loopback included (a model on
  a developer's machine).

A name is checked by what it resolves to, both when the model is registered (if it resolves
then) and before every call, so a name later pointed at a forbidden address is refused too.
A call (:func:`post`) then connects only to the addresses that were checked: were the HTTP
client to resolve the name again, a DNS answer changed in between (DNS rebinding) would reach an
address never checked. Like ``socket.create_connection`` it tries each of them in the order the
resolver gave them (one host down, or IPv6 unreachable, must not fail a model that answers on
another), with the connect timeout for each. The Host header, and for https the SNI name and the
certificate's hostname verification, stay on the registered name, and so do the errors: a model
team knows the host it registered, not the addresses it resolves to (tried ones follow in
parentheses).

The same guard serves webhooks (``pipeline/webhooks.py``): their receivers are listed in
`MATHSET_WEBHOOK_HOSTS`, passed as `hosts_setting`. Its default is ``public``: any globally
routable address, never loopback, private or carrier-grade NAT ranges unless listed. Webhooks are
registered by model teams as well as curators, and a delivery's recorded status or connection error
would otherwise map which ports answer on the platform's own network.

A call may be given a deadline (``timeout=Deadline(seconds)``): then `seconds` bound the whole
call, not each wait for bytes. A socket timeout alone lets a server that drips its answer a byte
at a time, each within the timeout, hold the worker until Celery's time limit; with a deadline,
resolving, connecting to each address, the TLS handshake, sending, the answer's status and headers
and (unless `stream`) its body all fit in `seconds`, and past them the call fails with
``requests.Timeout`` naming the deadline (:class:`_Watch` says how). External models and webhooks
are both called with one. Resolving is waited for only as long as the deadline lasts (a resolver
that never answers is left to give up on its own, in a thread of its own); of each address but the
last, connecting may take a share of the time left (one whose packets are dropped must leave the
next ones time to answer), and once connected the call has all that is left. A deadline may also
cap the answer's body (``Deadline(max_bytes=...)``, unless `stream`): its Content-Length, or what is
read of it (decoded), past the cap fails the call with :class:`ResponseTooLarge`.

Redirects are never followed, nor their bodies read whole: requests reads the whole body of a
redirect to release its connection even when it follows none (:class:`_Session`).

A URL may carry a user name and password (``https://team:secret@models.lab.example/predict``):
``requests`` sends them as HTTP basic auth. The password is never shown: the API, the
registry's pages, error messages and evaluation records all show :func:`redacted` URLs.
"""
from __future__ import annotations

import ipaddress
import os
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

# Metadata services outside the link-local ranges: AWS's IPv6 one (in fd00::/8, shared with real
# networks) and Alibaba Cloud's (in the carrier-grade NAT range 100.64.0.0/10).
_METADATA = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
# Allowed-hosts entry for "any public address": loopback, private, carrier-grade NAT and the other
# non-global ranges stay out unless listed by name or network.
PUBLIC = "public"


class EndpointRefused(ValueError):
    """The URL may not be called; the message says why."""


class ResponseTooLarge(Exception):
    """The answer's body is longer than its :class:`Deadline` allows (`max_bytes`), as its
    Content-Length declares (`declared`) or as read; nothing of it is kept. Not a network error."""

    def __init__(self, message: str, *, max_bytes: int, declared: int | None = None):
        super().__init__(message)
        self.max_bytes, self.declared = max_bytes, declared


@dataclass(frozen=True)
class Deadline:
    """A `timeout` for :func:`post` that is the deadline of the whole call, not of each wait: see
    the module docstring. `setting` names where the seconds come from (a setting), for the error.

    `max_bytes`, unless the call is a `stream`, caps the answer's body too (read within the
    deadline, so both bound the same read), `max_bytes_setting` naming its setting."""

    seconds: float
    setting: str = ""
    max_bytes: int | None = None
    max_bytes_setting: str = ""


MODEL_HOSTS = "MATHSET_MODEL_HOSTS"


def _allowed_entries(hosts_setting: str = MODEL_HOSTS) -> list[str]:
    raw = getattr(settings, hosts_setting, "*") or "*"
    return [e.strip().lower() for e in raw.split(",") if e.strip()]


def _embedded(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The IPv4 address an IPv6 one stands for (IPv4-mapped, or 6to4 ``2002:a.b.c.d::``, which a
    6to4 relay routes to a.b.c.d), else `ip` itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        return ip.ipv4_mapped or ip.sixtofour or ip
    return ip


def _forbidden(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    ip = _embedded(ip)
    if ip.is_loopback:  # ::1 lies in IPv6's reserved ::/8
        return False
    return ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved or ip in _METADATA


def _literal(host: str):
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _listed(host: str, ips: list, entries: list[str]) -> bool:
    if "*" in entries:
        return True
    # A name that does not resolve yet passes (ips empty): it is checked again before each call.
    if PUBLIC in entries and all(_embedded(ip).is_global for ip in ips):
        return True
    for entry in entries:
        if entry.startswith(".") and (host == entry[1:] or host.endswith(entry)):
            return True
        if entry == host:
            return True
        try:
            network = ipaddress.ip_network(entry.strip("[]"), strict=False)
        except ValueError:
            continue
        if ips and all(ip in network for ip in ips):
            return True
    return False


def resolve(host: str, port: int) -> list:
    """The addresses `host` resolves to, in the resolver's order, each once (what :func:`post`
    tries, in that order)."""
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    # The order is the resolver's preference (RFC 6724: IPv6 first where it is configured, ...),
    # the order a connection should try them in; sorting would lose it.
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))


def redacted(url: str) -> str:
    """`url` with the password of its user information, if any, replaced by ``***`` (the URL as
    it may be shown to anyone who reads the registry or a job's errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _sep, host = parts.netloc.rpartition("@")
    name = user.split(":", 1)[0]
    return parts._replace(netloc=f"{name}:***@{host}").geturl()


def check(url: str, *, must_resolve: bool, hosts_setting: str = MODEL_HOSTS, what: str = "model") -> list:
    """Raise EndpointRefused unless `url` may be called (see the module docstring); return the
    addresses checked (those its host resolves to, or its literal address).

    `must_resolve=False` (registering a model not yet deployed) lets a name that does not
    resolve pass; it is checked again before every call, where it must resolve. `hosts_setting`
    names the setting that lists the allowed hosts, `what` what is called there (for messages)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointRefused("must be an http(s) URL with a host")
    host = parts.hostname.lower().rstrip(".")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise EndpointRefused("has a port that is not a number from 0 to 65535") from None
    literal = _literal(host)
    if literal is not None:
        ips = [literal]
    else:
        try:
            ips = resolve(host, port)
        except (OSError, UnicodeError):
            if must_resolve:
                raise EndpointRefused(f"host {host!r} does not resolve") from None
            ips = []
    bad = [ip for ip in ips if _forbidden(ip)]
    if bad:
        raise EndpointRefused(f"host {host!r} is at {bad[0]}, a link-local, metadata, multicast or reserved "
                              f"address where no {what} may be reached")
    entries = _allowed_entries(hosts_setting)
    if not _listed(host, ips, entries):
        raise EndpointRefused(f"host {host!r} is not among the {what} hosts this platform may call "
                              f"({hosts_setting}: {', '.join(entries)})")
    return ips


def _same_host(a: str, b: str) -> bool:
    a, b = a.lower().strip("[]").rstrip("."), b.lower().strip("[]").rstrip(".")
    la, lb = _literal(a), _literal(b)
    return la == lb if la is not None or lb is not None else a == b


class _Watch:
    """The running deadline of one call, `seconds` from its start, however the time is spent.

    A socket timeout bounds each wait for bytes, not their sum. So each socket a connection makes or
    re-arms gets at most the time left (:meth:`timeout`; CPython bounds a whole TLS handshake, and
    each TLS read, by it too), and once connected a timer shuts the connection's socket down when
    the time is up: a blocked read then ends at once, on plain and TLS sockets alike, and
    :func:`post` raises ``requests.Timeout`` naming the deadline.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._ends = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._connections: list = []
        self._passed = self._stopped = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True  # never keeps a worker process from exiting
        self._timer.start()

    def timeout(self, configured: object) -> float:
        """A socket timeout for the next step: `configured`, but no later than the deadline (a
        sliver rather than 0, which would make the socket non-blocking instead of timing out)."""
        left = max(self.left, 0.001)
        return min(configured, left) if isinstance(configured, int | float) else left

    @property
    def left(self) -> float:
        """Seconds to the deadline (0 once it has passed)."""
        return max(self._ends - time.monotonic(), 0.0)

    @staticmethod
    def _shut(connection) -> None:
        sock = getattr(connection, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # closed meanwhile: nothing left to stop
                pass

    def watch(self, connection) -> None:
        """Shut `connection` (just connected) down when the deadline passes, or now if it has."""
        with self._lock:
            self._connections.append(connection)
            if self._passed:
                self._shut(connection)

    def _expire(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._passed = True
            for connection in self._connections:
                self._shut(connection)

    def stop(self) -> bool:
        """End the watch; whether the timer had shut the connection (what was read may be cut short)."""
        self._timer.cancel()
        with self._lock:
            self._stopped = True
            return self._passed

    @property
    def over(self) -> bool:
        """Whether the time is up by the clock (a socket timeout armed with the time left can end
        a moment before the timer fires)."""
        return time.monotonic() >= self._ends


@dataclass
class _Pin:
    """The checked addresses of one call's host, its deadline if any, and what became of the
    attempts to reach them (for the error messages: the socket errors never name the host)."""

    host: str
    port: int
    addresses: list
    connected: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    failed: list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, str]] = field(default_factory=list)
    error: str = ""  # why no connection was made, when none was
    deadline: _Watch | None = None  # the call's deadline, if it has one

    @property
    def where(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def at(self) -> str:
        return f" (at {self.connected})" if self.connected is not None else ""


def _connect(ip, port: int, timeout, source_address, socket_options) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_STREAM,
                         socket.IPPROTO_TCP)
    try:
        for option in socket_options or ():
            sock.setsockopt(*option)
        # urllib3's "no timeout given" sentinel is neither: the socket keeps the default timeout
        if timeout is None or isinstance(timeout, int | float):
            sock.settimeout(timeout)
        if source_address:
            sock.bind(source_address)
        sock.connect((str(ip), port))
        return sock
    except BaseException:
        sock.close()
        raise


def _why(exc: OSError, timeout) -> str:
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout}s"
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


class _PinnedConnectionMixin:
    """A urllib3 connection to the name in the URL (Host header, SNI, certificate check) whose
    socket goes to the checked addresses only, each in turn, never resolving the name itself;
    within the call's deadline, if it has one (:class:`_Watch`)."""

    def __init__(self, *args, pin: _Pin, **kwargs):
        self._pin = pin
        super().__init__(*args, **kwargs)

    # http.client and urllib3 set `timeout` and read it for each socket they make or re-arm: read
    # through the call's deadline, if it has one, it bounds connecting to each address, the TLS
    # handshake and each read by the time left.
    @property
    def timeout(self):
        deadline = self._pin.deadline
        return self._configured_timeout if deadline is None else deadline.timeout(self._configured_timeout)

    @timeout.setter
    def timeout(self, value) -> None:
        self._configured_timeout = value

    def connect(self) -> None:
        super().connect()
        if self._pin.deadline is not None:
            self._pin.deadline.watch(self)

    def _new_conn(self) -> socket.socket:
        pin = self._pin
        pin.connected, pin.failed, pin.error = None, [], ""
        if not _same_host(self.host, pin.host) or self.port != pin.port:
            # this session calls one URL and follows no redirect: another host was never checked
            pin.error = f"{self.host}:{self.port} is not the host checked ({pin.where})"
            raise NewConnectionError(self, pin.error)
        timed_out = []
        for n, ip in enumerate(pin.addresses):
            timeout = self.timeout  # what is left of a deadline shrinks with each address
            if pin.deadline is not None:
                # a share of it for each address still to try: one whose packets are dropped would
                # otherwise wait out the deadline, and the next one, which answers, get no time
                timeout /= len(pin.addresses) - n
            try:
                sock = _connect(ip, self.port, timeout, self.source_address, self.socket_options)
            except OSError as exc:  # this address is down or unreachable: the next one may answer
                pin.failed.append((ip, _why(exc, timeout)))
                timed_out.append(isinstance(exc, TimeoutError))
                continue
            if pin.deadline is not None:
                sock.settimeout(self.timeout)  # connected: the TLS handshake may have all that is left
            pin.connected = ip
            return sock
        if timed_out and all(timed_out):
            tried = ", ".join(str(ip) for ip, _ in pin.failed)
            pin.error = (f"connecting to {pin.where} timed out after {self._configured_timeout}s "
                         f"({'at' if len(pin.failed) == 1 else 'at each of'} {tried})")
            # requests turns this one (and only this one) into ConnectTimeout
            raise ConnectTimeoutError(self, pin.error)
        detail = "; ".join(f"{why} (at {ip})" for ip, why in pin.failed)
        pin.error = f"cannot connect to {pin.where}: {detail or 'no address'}"
        raise NewConnectionError(self, pin.error)


class _PinnedHTTPConnection(_PinnedConnectionMixin, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_PinnedConnectionMixin, HTTPSConnection):
    pass


class _PinnedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


class _PinnedPoolManager(PoolManager):
    def __init__(self, *args, pin: _Pin, **kwargs):
        super().__init__(*args, **kwargs)
        self.pin = pin
        self.pool_classes_by_scheme = {"http": _PinnedHTTPPool, "https": _PinnedHTTPSPool}

    def _new_pool(self, scheme, host, port, request_context=None):
        pool = super()._new_pool(scheme, host, port, request_context)
        # given to each connection, not as a pool keyword: PoolManager keys pools by a fixed set
        # of keywords and refuses others
        pool.conn_kw["pin"] = self.pin
        return pool


class _Session(requests.Session):
    """A session that never follows a redirect, nor reads one's body. With ``allow_redirects=False``
    requests still reads the whole body of a redirect (a 3xx with a Location) to release its
    connection, even with `stream`: a receiver or model answering one with an endless body would
    fill the worker's memory until the deadline, and past any cap on the body."""

    def get_redirect_target(self, resp):
        return None


class _PinnedAdapter(HTTPAdapter):
    def __init__(self, pin: _Pin):
        self.pin = pin
        super().__init__()

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        self._pool_connections, self._pool_maxsize, self._pool_block = connections, maxsize, block
        self.poolmanager = _PinnedPoolManager(num_pools=connections, maxsize=maxsize, block=block, pin=self.pin,
                                              **pool_kwargs)


def _leaf(exc: BaseException) -> BaseException:
    """The innermost error a requests exception wraps (through urllib3's MaxRetryError,
    ProtocolError, SSLError ...)."""
    for _ in range(10):
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in exc.args if isinstance(a, BaseException)), None)
        if inner is None:
            return exc
        exc = inner
    return exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        # "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: ... (_ssl.c:1006)": the
        # reason without the OpenSSL code and the C source line
        return re.sub(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$", "", exc.strerror or str(exc))
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    texts = [a for a in exc.args if isinstance(a, str)]  # urllib3's (pool, url, message): not the pool
    return texts[-1] if texts else str(exc) or type(exc).__name__


def _named(exc: requests.RequestException, pin: _Pin, timeout) -> requests.RequestException:
    """`exc` again (its type, for the callers' except clauses and the task's retries) with a
    message naming the registered host and port, the address tried in parentheses."""
    leaf = _leaf(exc)
    if pin.error:  # no connection: what became of each address
        message = pin.error
    elif isinstance(exc, requests.exceptions.SSLError):
        message = f"TLS with {pin.where}{pin.at} failed: {_describe(leaf)}"
    elif isinstance(exc, requests.exceptions.ReadTimeout):
        read = timeout[1] if isinstance(timeout, tuple) else timeout
        message = f"{pin.where}{pin.at} did not answer within {read}s"
    else:
        message = f"the connection to {pin.where}{pin.at} failed: {_describe(leaf)}"
    return type(exc)(message, request=exc.request, response=exc.response)


def _checked_in_time(url: str, deadline: _Watch | None, setting: str, **kwargs) -> list:
    """:func:`check` (`must_resolve`), waiting for it only until the deadline: the resolver cannot be
    interrupted, so past the deadline it is left to give up on its own, in its thread, and the call
    fails with ``requests.Timeout`` naming the deadline."""
    if deadline is None:
        return check(url, must_resolve=True, **kwargs)
    outcome: dict = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["ips"] = check(url, must_resolve=True, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="mathset-resolve", daemon=True).start()
    if not done.wait(deadline.left):
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
        raise requests.Timeout(f"{host} did not resolve within {deadline.seconds:g}s, the deadline of one try"
                               f"{f' ({setting})' if setting else ''}.")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["ips"]


def _read_capped(response: requests.Response, pin: _Pin, deadline: Deadline) -> None:
    """Read the body of `response` (streamed) into it, or raise ResponseTooLarge (the response closed)
    once its Content-Length or what is read of it, decoded, passes `deadline.max_bytes`."""
    cap = deadline.max_bytes
    setting = f" ({deadline.max_bytes_setting})" if deadline.max_bytes_setting else ""
    length = response.headers.get("Content-Length", "")
    declared = int(length) if length.strip().isdigit() else None
    if declared is not None and declared > cap:
        response.close()
        raise ResponseTooLarge(f"{pin.where}{pin.at} answered {declared} bytes (its Content-Length), more than "
                               f"the {cap} bytes an answer may hold{setting}", max_bytes=cap, declared=declared)
    chunks, size = [], 0
    for chunk in response.iter_content(chunk_size=64 * 1024):
        size += len(chunk)
        if size > cap:
            response.close()
            raise ResponseTooLarge(f"{pin.where}{pin.at} answered more than the {cap} bytes an answer may "
                                   f"hold{setting}", max_bytes=cap)
        chunks.append(chunk)
    response._content = b"".join(chunks)  # what `content`, `text` and `json()` read


def post(url: str, *, json: dict | None = None, data: bytes | None = None, headers: dict | None = None,
         timeout: float | Deadline, hosts_setting: str = MODEL_HOSTS, what: str = "model",
         stream: bool = False) -> requests.Response:
    """POST `json` (or the bytes `data`, with `headers`) to `url` after :func:`check`, connected
    to one of the addresses checked (each in turn until one accepts), never following a redirect.
    Raises EndpointRefused, or the ``requests`` exceptions of a failed connection, their messages
    naming the URL's host and port. With `stream` the answer's body is not read (only its status
    and headers are): a caller that needs no body neither waits for nor holds one of any size.

    `timeout` in seconds bounds each wait (connecting to each address, each read). A
    :class:`Deadline` bounds the whole call instead, resolving included: its seconds are also each
    wait's timeout, and past them the call raises ``requests.Timeout`` naming the deadline (and
    its setting), whatever it was doing. With `stream` the deadline ends once the status and
    headers are in: the body is the caller's to read, or (better) to leave unread. Without it, a
    deadline's `max_bytes` caps the body: past it the call raises :class:`ResponseTooLarge`.

    No proxy from the environment is used: a proxy would resolve the name again. The CA bundle the
    environment names (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) is still used.
    """
    deadline = _Watch(timeout.seconds) if isinstance(timeout, Deadline) else None  # resolving counts too
    seconds = timeout.seconds if isinstance(timeout, Deadline) else timeout
    capped = isinstance(timeout, Deadline) and timeout.max_bytes is not None and not stream
    try:
        ips = _checked_in_time(url, deadline, timeout.setting if isinstance(timeout, Deadline) else "",
                               hosts_setting=hosts_setting, what=what)
        parts = urlsplit(url)
        pin = _Pin(host=parts.hostname.lower().rstrip("."),
                   port=parts.port or (443 if parts.scheme == "https" else 80), addresses=ips, deadline=deadline)
        with _Session() as session:
            session.trust_env = False  # no proxy: it would resolve the name again, past the check
            session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            # The URL keeps the name, so the Host header, SNI and the certificate check are on it; the
            # adapter only decides where the socket goes.
            adapter = _PinnedAdapter(pin)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            try:
                response = session.post(url, json=json, data=data, headers=headers, timeout=seconds,
                                        allow_redirects=False, stream=stream or capped)
                if capped:  # within the deadline, as requests would read it (ResponseTooLarge is no network error)
                    _read_capped(response, pin, timeout)
            except requests.RequestException as exc:
                # Past the deadline, whatever broke (a read ended by the shutdown, a body cut short) broke
                # because of it.
                if deadline is not None and (deadline.stop() or deadline.over):
                    raise requests.Timeout(_past(pin, timeout), request=exc.request) from exc
                if isinstance(exc, requests.ConnectionError | requests.Timeout):
                    raise _named(exc, pin, seconds) from exc
                raise
            if deadline is not None and deadline.stop():  # the answer came as the socket was shut: it may be cut short
                response.close()
                raise requests.Timeout(_past(pin, timeout), request=response.request)
            return response
    finally:
        if deadline is not None:
            deadline.stop()


def _past(pin: _Pin, deadline: Deadline) -> str:
    setting = f" ({deadline.setting})" if deadline.setting else ""
    return f"{pin.where}{pin.at} did not answer within {deadline.seconds:g}s, the deadline of one try{setting}."
