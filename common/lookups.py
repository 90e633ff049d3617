"""``json_field__has_item=value``: the JSON array in the field holds `value`, on both databases.

Django's ``contains`` lookup on a JSONField is PostgreSQL-only (SQLite raises
NotSupportedError), and ``icontains`` on the text would match substrings (``"alg"`` inside
``"algebra"``). This lookup compiles to:

* PostgreSQL: ``field @> '["value"]'::jsonb`` (jsonb containment, which a GIN index can serve);
* SQLite: ``EXISTS (SELECT 1 FROM json_each(field) WHERE value = %s)`` (JSON1, built into
  every SQLite Python ships with).

`value` is a plain string or number, compared as JSON (``"1"`` and ``1`` differ on both). A
field that is not an array (null, an object) holds nothing. Registered on JSONField when the
``common`` app is ready.
"""
from __future__ import annotations

import json

from django.db import NotSupportedError
from django.db.models import JSONField, Lookup


class HasItem(Lookup):
    lookup_name = "has_item"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        if hasattr(self.rhs, "resolve_expression") or isinstance(self.rhs, bool) or not isinstance(
                self.rhs, (str, int, float)):
            raise TypeError("has_item takes a plain string or number")
        lhs, lhs_params = self.process_lhs(compiler, connection)
        if connection.vendor == "postgresql":
            return f"{lhs} @> %s::jsonb", [*lhs_params, json.dumps([self.rhs])]
        if connection.vendor == "sqlite":
            # json_each of a non-array scalar yields that scalar: require an array so "x" is not ["x"]
            return (f"(json_type({lhs}) = 'array' AND EXISTS (SELECT 1 FROM json_each({lhs}) AS je "
                    f"WHERE je.value = %s AND je.type = %s))",
                    [*lhs_params, *lhs_params, self.rhs, _sqlite_type(self.rhs)])
        raise NotSupportedError(f"has_item is not implemented for {connection.vendor}")


def _sqlite_type(value) -> str:
    """json_each's ``type`` for a value, so a string never equals a number and the reverse."""
    if isinstance(value, str):
        return "text"
    return "integer" if isinstance(value, int) else "real"


JSONField.register_lookup(HasItem)
