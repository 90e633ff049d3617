"""Models of the accounts app: API tokens, and the failed logins that brute-force protection counts."""
from __future__ import annotations

import hashlib
import secrets

from django.db import models
from django.utils import timezone


class LoginFailure(models.Model):
    """One failed password login (wrong password or unknown username), kept while it counts.

    `common.login_limits` counts these per username and per client address to refuse
    further attempts for a while. They live in the database, not in the cache, so that
    every web worker sees the same count on the embedded default (SQLite, a per-process
    cache) as on PostgreSQL. A successful login deletes the username's rows; rows older
    than the counting window are deleted as new ones are written.
    """

    username = models.CharField(max_length=150, help_text="As typed, lower-cased.")
    ip = models.CharField(max_length=64, blank=True, help_text="The client address (common.login_limits.client_ip).")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["username", "at"], name="loginfailure_username_at"),
            models.Index(fields=["ip", "at"], name="loginfailure_ip_at"),
            models.Index(fields=["at"], name="loginfailure_at"),
        ]

    def __str__(self) -> str:
        return f"{self.username} from {self.ip or '?'} at {self.at:%Y-%m-%d %H:%M:%S}"


class ApiToken(models.Model):
    """A user's API key for `Authorization: Token <key>`, stored only as its SHA-256 digest.

    The key itself is shown once, when it is issued (`common.services.api_token_rotate`),
    and never kept: a copy of the database, a backup or the admin reveals no usable key.
    Keys are 256 random bits, so an unsalted fast hash is enough (no dictionary to try);
    the lookup is by digest, so comparing it leaks nothing about the key. `prefix` (the
    first characters of the key) lets a curator tell which key a leak or a script holds.
    One token per user: issuing a new one revokes the old.
    """

    user = models.OneToOneField("auth.User", on_delete=models.CASCADE, related_name="api_token")
    digest = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the key, hexadecimal.")
    prefix = models.CharField(max_length=16, help_text="The key's first characters, to recognise it by.")
    created = models.DateTimeField(default=timezone.now)

    KEY_PREFIX = "mst_"  # lets secret scanners and people recognise a Mathset key

    def __str__(self) -> str:
        return f"{self.prefix}… of {self.user_id}"

    @staticmethod
    def digest_of(key: str) -> str:
        """The stored form of `key`."""
        return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()

    @classmethod
    def new_key(cls) -> str:
        return cls.KEY_PREFIX + secrets.token_urlsafe(32)
