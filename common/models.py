"""Models of the accounts app: the failed logins that brute-force protection counts."""
from __future__ import annotations

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
