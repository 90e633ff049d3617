"""Brute-force protection for password logins.

Every failed password check is stored (`LoginFailure`) with the username typed and the
client address. Failures within the last `MATHSET_LOGIN_FAILURE_WINDOW_S` seconds are
counted three ways, and while any count reaches its limit further attempts it covers are
refused without checking the password, until enough of those failures have left the
window (at most that many guesses per window, however fast they come):
- per username *and* address, `MATHSET_LOGIN_FAILURES_PER_USERNAME_AND_IP` (10): the
  lockout an attacker meets. It is the pair that is locked, not the username, so typing
  wrong passwords for someone's username does not lock them out of their account when
  they log in from elsewhere (what django-axes calls locking out by the combination of
  username and IP);
- per address, `MATHSET_LOGIN_FAILURES_PER_IP` (50): one address trying many usernames;
- per username from any address, `MATHSET_LOGIN_FAILURES_PER_USERNAME` (100): a
  distributed attack on one account. This one does lock the real user out too, so it sits
  well above the pair limit: a single address, refused at the pair limit (refusals are
  not counted), never reaches it alone.
A successful login clears the username's failures from the address it came from only:
the real user logging in from home must not give an attacker elsewhere fresh guesses,
and one account's success must not reset a spray from its address either.

Where passwords are checked, all through `django.contrib.auth.authenticate`:
- `LoginLimitBackend`, first in AUTHENTICATION_BACKENDS, refuses a locked-out attempt
  (PermissionDenied stops `authenticate` before ModelBackend sees the password), so the
  login page, the admin login and any future endpoint calling `authenticate(request, ...)`
  are covered;
- the `user_login_failed` / `user_logged_in` receivers (connected in CommonConfig.ready)
  count a failure and clear the count on success;
- `LockoutMessageMixin` makes the login forms say why (instead of "wrong password").
The API takes no passwords (tokens are issued by curators on /people/).

Client address: REMOTE_ADDR, unless `MATHSET_PROXY_COUNT` says how many proxies in front
append to X-Forwarded-For; then the address the outermost of them saw. A client can write
anything into the header, so it is never trusted otherwise.

Counts live in the database, shared by every web worker; the cache would not do on the
embedded default, whose local-memory cache is per process (with gunicorn's N workers an
attacker would get N times the limit). Two concurrent failures may both pass the check:
the limits may be exceeded by the number of requests in flight, never more.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from .models import LoginFailure

# Set on the request by LoginLimitBackend: the lockout that refused it, or that the
# password was checked (so a login that follows was a password login).
LOCKOUT_ATTR = "_mathset_login_lockout"
CHECKED_ATTR = "_mathset_login_checked"


@dataclass(frozen=True)
class Lockout:
    """Attempts are refused for `retry_after` more seconds."""

    retry_after: int

    @property
    def message(self) -> str:
        minutes = max(1, math.ceil(self.retry_after / 60))
        unit = "minute" if minutes == 1 else "minutes"
        return f"Too many failed login attempts. Try again in {minutes} {unit}."


def client_ip(request) -> str:
    """The client's address: REMOTE_ADDR, or the X-Forwarded-For entry written by the
    outermost of `MATHSET_PROXY_COUNT` trusted proxies (each appends the address it saw)."""
    proxies = settings.MATHSET_PROXY_COUNT
    if proxies > 0:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        if len(hops) >= proxies:
            return hops[-proxies][:64]
    return (request.META.get("REMOTE_ADDR") or "")[:64]


def username_key(username: str) -> str:
    # Lower-cased: usernames are unique regardless of case here (common.services.user_create).
    return str(username).lower()[:150]


def window() -> timedelta:
    return timedelta(seconds=settings.MATHSET_LOGIN_FAILURE_WINDOW_S)


def lockout_for(*, username: str, ip: str) -> Lockout | None:
    """The lockout in force for this username from this address, or None."""
    now = timezone.now()
    recent = LoginFailure.objects.filter(at__gt=now - window())
    mine = recent.filter(username=username_key(username))
    limits = [
        # An empty address (no REMOTE_ADDR) is one more address here: such attempts share a pair.
        (mine.filter(ip=ip), settings.MATHSET_LOGIN_FAILURES_PER_USERNAME_AND_IP),
        (mine, settings.MATHSET_LOGIN_FAILURES_PER_USERNAME),
    ]
    if ip:
        limits.append((recent.filter(ip=ip), settings.MATHSET_LOGIN_FAILURES_PER_IP))
    until = None
    for failures, limit in limits:
        if limit <= 0:  # 0 switches that limit off
            continue
        # Once the limit-th most recent failure leaves the window, fewer than `limit` remain.
        nth = list(failures.order_by("-at").values_list("at", flat=True)[limit - 1:limit])
        if nth:
            ends = nth[0] + window()
            until = ends if until is None else max(until, ends)
    if until is None:
        return None
    return Lockout(retry_after=max(1, math.ceil((until - now).total_seconds())))


class LoginLimitBackend:
    """First of AUTHENTICATION_BACKENDS: refuses a locked-out attempt (username and address,
    address, or username) before any other backend checks the password. Never authenticates
    anyone itself."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if request is None or username is None:  # not a login from a client (shell, tests' client.login)
            return None
        lockout = lockout_for(username=username, ip=client_ip(request))
        if lockout is not None:
            setattr(request, LOCKOUT_ATTR, lockout)
            raise PermissionDenied(lockout.message)  # authenticate() stops here
        setattr(request, CHECKED_ATTR, True)
        return None

    # No get_user(): sessions name the backend that authenticated (ModelBackend), and the
    # test client's force_login() takes the first backend that has one.


def on_login_failed(sender, credentials, request=None, **kwargs):
    """`user_login_failed`: count it, unless it was refused by a lockout (the password was not checked)."""
    if request is None or getattr(request, LOCKOUT_ATTR, None) is not None:
        return
    username = credentials.get(get_user_model().USERNAME_FIELD)
    if username is None:
        return
    from .services import login_failure_record

    login_failure_record(username=username, ip=client_ip(request))


def on_logged_in(sender, request, user, **kwargs):
    """`user_logged_in`: a password login clears the username's failures from that address
    (force_login and the like, which check no password, cost no query)."""
    if request is not None and getattr(request, CHECKED_ATTR, False):
        from .services import login_failures_reset

        login_failures_reset(username=user.get_username(), ip=client_ip(request))


class LockoutMessageMixin:
    """For an AuthenticationForm: say that the attempt was refused for too many failures,
    rather than that the password was wrong."""

    def get_invalid_login_error(self):
        lockout = getattr(self.request, LOCKOUT_ATTR, None)
        if lockout is not None:
            return ValidationError(lockout.message, code="locked_out")
        return super().get_invalid_login_error()
