"""Create-only fields: what an update may be sent but never changes.

An update that silently skipped such a field would answer 200 as if it had been
applied. Instead a value other than the stored one is refused with a 400 naming
the field, while the stored value sent back unchanged (a representation read,
edited and sent back whole) changes nothing and passes.

`drop_unchanged` serves services (parsed values, relations as objects);
`refuse_changes` serves views whose update serializer does not parse the field
at all (raw request values compared with the stored ones).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from django.core.exceptions import ValidationError

CANNOT_CHANGE = "This field cannot be changed."
CREATE_ONLY_HELP = "Set on create; cannot be changed afterwards (an update may send the stored value unchanged)."

# A create-only input with no stored value to compare with: sending it at all is refused.
NOT_STORED = object()


def _same(sent: object, stored: object) -> bool:
    if stored is NOT_STORED:
        return False
    if isinstance(stored, list | tuple):
        return (isinstance(sent, list | tuple) and len(sent) == len(stored)
                and all(_same(a, b) for a, b in zip(sent, stored, strict=True)))
    if isinstance(sent, bool) or isinstance(stored, bool):
        return type(sent) is type(stored) and sent == stored
    if sent == stored:
        return True
    # Form and multipart bodies carry numbers as text: "3" is the stored 3.
    scalar = (str, int, float)
    return isinstance(sent, scalar) and isinstance(stored, scalar) and str(sent) == str(stored)


def drop_unchanged(instance, changes: dict, names: Iterable[str]) -> dict:
    """`changes` without the create-only `names` whose value is what `instance` already
    stores (relations compared by primary key); any other value of them stays in, for
    the service to refuse."""
    out = dict(changes)
    for name in names:
        if name not in out:
            continue
        field = instance._meta.get_field(name)
        value = out[name]
        if field.is_relation:
            same = getattr(value, "pk", value) == getattr(instance, field.attname)
        else:
            same = value == getattr(instance, field.attname)
        if same:
            del out[name]
    return out


def refuse_changes(data: Mapping, stored: Mapping[str, object]) -> None:
    """Raise a ValidationError (a 400) naming the first field of `stored` that the request
    body `data` sends with a value other than the stored one (NOT_STORED: any value).

    A body that is not an object (a JSON list or string) is left to the serializer, which
    answers 400 "Expected a dictionary"; `in` and `[]` on it would test other things."""
    if not isinstance(data, Mapping):
        return
    for name, current in stored.items():
        if name not in data:
            continue
        sent = data.getlist(name) if hasattr(data, "getlist") and isinstance(current, list | tuple) else data[name]
        if not _same(sent, current):
            raise ValidationError({name: CANNOT_CHANGE})
