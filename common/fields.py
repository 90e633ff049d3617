"""Serializer fields shared by the apps."""
from django.core.validators import EmailValidator, URLValidator
from rest_framework import serializers

# The largest values the databases store, so an API input can be refused (a 400 naming its field)
# before the database refuses it (an OverflowError on SQLite, a DataError on PostgreSQL: a 500).
# Row ids (BigAutoField) and PositiveBigIntegerField are 64-bit on both databases; IntegerField
# and PositiveIntegerField are 32-bit on PostgreSQL.
MAX_BIGINT = 2**63 - 1
MAX_INT = 2**31 - 1


def is_row_id(value: object) -> bool:
    """Whether `value` could be a row id: an int (not a bool) between 1 and MAX_BIGINT.

    The ORM answers "not found" for an out-of-range id in an exact lookup, but not in
    ``__in`` lookups, raw SQL or an insert; callers check with this first."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_BIGINT


def parse_row_id(text: object) -> int | None:
    """The row id a query parameter or form value spells, or None.

    Only ASCII digits count: ``str.isdigit()`` is also true of "²" or "٣", which ``int()``
    refuses or reads as another number, and an id beyond MAX_BIGINT would reach the database
    and fail there; both are "no such id" here."""
    if not (isinstance(text, str) and text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if is_row_id(value) else None


class RowIdField(serializers.IntegerField):
    """The id of a row, looked up by the view or the service: 1..MAX_BIGINT, so a larger number
    is a 400 naming the field rather than a database error."""

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_BIGINT)
        super().__init__(**kwargs)


class OptionalURLField(serializers.CharField):
    """A URL or the empty string.

    DRF's URLField(allow_blank=True) is documented by drf-spectacular as a oneOf
    that the empty string matches twice, which makes valid responses fail schema
    validation; a string with a URL validator documents cleanly.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("max_length", 200)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value:
            URLValidator(message="Enter a valid URL (http or https).")(value)
        return value


class OptionalEmailField(serializers.CharField):
    """An e-mail address or the empty string (documented without `format: email`,
    which the empty string would violate)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("max_length", 254)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value:
            EmailValidator(message="Enter a valid e-mail address.")(value)
        return value


def unstorable_char(text: str) -> str | None:
    """The first character of `text` PostgreSQL can neither store nor compare, or None: U+0000
    (a DataError) and lone surrogates, which JSON's "\\ud800" escapes produce (a UnicodeEncodeError).
    DRF's CharField refuses both; input that skips it (JSON handed on as parsed) is checked with this."""
    return next((c for c in text if c == "\x00" or "\ud800" <= c <= "\udfff"), None)


class SlugRelatedField(serializers.SlugRelatedField):
    """DRF's SlugRelatedField refusing what PostgreSQL cannot compare before its lookup (a 500
    otherwise): DRF checks null and surrogate characters only on CharFields."""

    def to_internal_value(self, data):
        if isinstance(data, str) and unstorable_char(data) is not None:
            raise serializers.ValidationError("Null and surrogate characters are not allowed.")
        return super().to_internal_value(data)


def holds_unstorable(value: object) -> bool:
    """Whether a parsed JSON value holds, in any string or key, a character PostgreSQL stores in
    neither text nor jsonb (see `unstorable_char`), so free-form JSON input is checked first."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if unstorable_char(item) is not None:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def slug_for(name: str, *, prefix: str, max_length: int) -> str:
    """An ASCII slug for `name`: Django's slugify, or for a name written without any Latin
    letter or digit (수식, 手書き, Формулы) `prefix` plus a short digest of the name, so such
    names are accepted and the same name always gets the same slug. Empty when the name has
    no letter or digit at all."""
    import hashlib

    from django.utils.text import slugify

    slug = slugify(name)[:max_length]
    if slug or not any(ch.isalnum() for ch in name or ""):
        return slug
    return f"{prefix}-{hashlib.sha256(name.strip().encode()).hexdigest()[:8]}"
