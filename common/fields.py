"""Serializer fields shared by the apps."""
from django.core.validators import EmailValidator, URLValidator
from rest_framework import serializers


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
