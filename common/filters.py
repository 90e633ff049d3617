"""Filters shared by the apps' FilterSets (API lists and pages)."""
from __future__ import annotations

import django_filters
from django import forms

from .fields import MAX_BIGINT


class IdField(forms.IntegerField):
    """A row id: a whole number from 1 to MAX_BIGINT."""

    default_error_messages = {"invalid": "Enter a number."}  # as the NumberFilter it replaces says

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_BIGINT)
        super().__init__(*args, **kwargs)


class IdFilter(django_filters.NumberFilter):
    """Rows whose foreign key (``field_name``, e.g. ``spec_id``) is the given id.

    A number that cannot be an id is a 400 naming the filter: the ORM guards exact lookups
    on an id column against numbers beyond its range, but not lookups through a foreign
    key, so ``?spec=1e20`` would otherwise reach the database and fail there (a 500)."""

    field_class = IdField
