"""API token authentication that loads the user, their roles and their vendor at once.

Every API request of an annotator asks who they are, which roles they hold and
which vendor they work for. DRF's TokenAuthentication reads the user, then
`common.roles` and `labeling.selectors.vendor_of` read one more row each: three
round trips and three ORM compilations per request, the largest fixed cost of the
work queue. Here one hand-written statement (built once per process from the
models' own table and column names) answers all three; nothing is cached across
requests, so a revoked token, a removed role or a changed vendor counts at once.
Keys are looked up by their digest (`ApiToken`): the database holds no usable key.
"""
from __future__ import annotations

from django.apps import apps
from django.contrib.auth.models import Group, User
from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions

from . import rawsql, roles
from .models import ApiToken

_SQL: dict[str, str] = {}


def _sql() -> str:
    sql = _SQL.get(connection.vendor)
    if sql is None:
        membership = apps.get_model("labeling", "VendorMembership")
        vendor = apps.get_model("labeling", "Vendor")
        user_groups = User.groups.through
        qn, table, columns = rawsql.qn, rawsql.table, rawsql.columns
        sql = (
            f"SELECT {columns(ApiToken, 't')}, {columns(User, 'u')}, {columns(vendor, 'v')}, g.{qn('name')} "
            f"FROM {table(ApiToken)} t INNER JOIN {table(User)} u ON u.{qn('id')} = t.{qn('user_id')} "
            f"LEFT JOIN {table(membership)} m ON m.{qn('user_id')} = u.{qn('id')} "
            f"LEFT JOIN {table(vendor)} v ON v.{qn('id')} = m.{qn('vendor_id')} "
            f"LEFT JOIN {table(user_groups)} ug ON ug.{qn('user_id')} = u.{qn('id')} "
            f"LEFT JOIN {table(Group)} g ON g.{qn('id')} = ug.{qn('group_id')} "
            f"AND g.{qn('name')} IN {rawsql.in_list(roles.ROLES)} "
            f"WHERE t.{qn('digest')} = %s"
        )
        _SQL[connection.vendor] = sql
    return sql


def token_user(key: str) -> tuple[User, ApiToken] | None:
    """The user and token of an API key, with `_mathset_roles` and `_mathset_vendor`
    filled in (what `common.roles` and `vendor_of` would read), or None."""
    rows = rawsql.fetch(_sql(), [*roles.ROLES, ApiToken.digest_of(key)])
    if not rows:
        return None
    vendor_model = apps.get_model("labeling", "Vendor")
    first = rows[0]
    token = rawsql.build(ApiToken, first)
    user = rawsql.build(User, first, rawsql.width(ApiToken))
    token.user = user
    user._mathset_roles = frozenset(row[-1] for row in rows if row[-1] is not None)
    user._mathset_vendor = rawsql.build(vendor_model, first, rawsql.width(ApiToken) + rawsql.width(User))
    return user, token


class TokenAuthentication(authentication.TokenAuthentication):
    """`Authorization: Token <key>`, answered by one query (see the module docstring)."""

    def authenticate_credentials(self, key):
        found = token_user(key)
        if found is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        user, token = found
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        # A switched-off vendor's people stop working at once (see common.roles.roles_of, which
        # the roles read here bypass): the key of an annotator of that vendor kept taking tasks.
        vendor = getattr(user, "_mathset_vendor", None)
        if vendor is not None and not vendor.active:
            raise exceptions.AuthenticationFailed(_("Your vendor is not active."))
        return user, token
