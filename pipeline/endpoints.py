"""Which addresses an external HTTP model may be reached at.

Workers POST to a model team's `endpoint_url` and show the team part of what comes back
(an error status's text), so the URL must not become a way into the workers' own network.
Two rules:

- never a cloud metadata service (169.254.169.254 and the rest of the link-local ranges,
  fd00:ec2::254), nor a multicast, unspecified or reserved address: no model lives there;
- where `MATHSET_MODEL_HOSTS` is set (production should set it), only the hosts it lists:
  a name (`models.lab.example`), every name under a domain (`.lab.example`), or an address
  or network (`10.20.0.0/16`). Unset or `*`, any other host, loopback included (a model on
  a developer's machine).

A name is checked by what it resolves to, both when the model is registered (if it resolves
then) and before every call, so a name later pointed at a forbidden address is refused too.
A call (:func:`post`) then connects to the very address that was checked: were the HTTP client
to resolve the name again, a DNS answer changed in between (DNS rebinding) would reach an
address never checked. The Host header, and for https the SNI name and the certificate's
hostname verification, stay on the registered name.
"""
from __future__ import annotations

import ipaddress
import os
import socket
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

# AWS's IPv6 metadata address is not link-local (it is in fd00::/8, shared with real networks).
_METADATA = {ipaddress.ip_address("fd00:ec2::254")}


class EndpointRefused(ValueError):
    """The URL may not be called; the message says why."""


def _allowed_entries() -> list[str]:
    raw = getattr(settings, "MATHSET_MODEL_HOSTS", "*") or "*"
    return [e.strip().lower() for e in raw.split(",") if e.strip()]


def _forbidden(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
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
    """The addresses `host` resolves to (what the HTTP client will connect to)."""
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return sorted({ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}, key=str)


def check(url: str, *, must_resolve: bool) -> list:
    """Raise EndpointRefused unless `url` may be called (see the module docstring); return the
    addresses checked (those its host resolves to, or its literal address).

    `must_resolve=False` (registering a model not yet deployed) lets a name that does not
    resolve pass; it is checked again before every call, where it must resolve."""
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
                              "address where no model may be reached")
    entries = _allowed_entries()
    if not _listed(host, ips, entries):
        raise EndpointRefused(f"host {host!r} is not among the model hosts this platform may call "
                              f"(MATHSET_MODEL_HOSTS: {', '.join(entries)})")
    return ips


class _PinnedTLSAdapter(HTTPAdapter):
    """HTTPS to an address in the URL while TLS speaks to, and verifies, `server_hostname`: the
    SNI name and the name the certificate must be for (urllib3's pool arguments)."""

    def __init__(self, server_hostname: str):
        self.server_hostname = server_hostname
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs.update(server_hostname=self.server_hostname, assert_hostname=self.server_hostname)
        super().init_poolmanager(*args, **kwargs)


def post(url: str, *, json: dict, timeout: float) -> requests.Response:
    """POST `json` to `url` after :func:`check`, connected to an address checked (the first of
    them; every one passed), never following a redirect. Raises EndpointRefused, or the
    ``requests`` exceptions of a failed connection.

    No proxy from the environment is used: a proxy would resolve the name itself, again. The CA
    bundle the environment names (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) is still used.
    """
    ips = check(url, must_resolve=True)
    parts = urlsplit(url)
    host = parts.hostname.lower().rstrip(".")
    with requests.Session() as session:
        session.trust_env = False  # no proxy: it would resolve the name again, past the check
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        headers = {}
        if _literal(host) is None:
            ip = ips[0]
            address = f"[{ip}]" if ip.version == 6 else str(ip)
            userinfo = parts.netloc.rpartition("@")[0]
            port = f":{parts.port}" if parts.port else ""
            # the name as the client would have sent it (no user info); the server routes on it
            headers["Host"] = parts.netloc.rpartition("@")[2]
            url = urlunsplit(parts._replace(netloc=f"{userinfo}@{address}{port}" if userinfo else f"{address}{port}"))
            if parts.scheme == "https":
                session.mount("https://", _PinnedTLSAdapter(host))
        return session.post(url, json=json, timeout=timeout, allow_redirects=False, headers=headers)
