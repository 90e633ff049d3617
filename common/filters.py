"""Filters shared by the apps' FilterSets (API lists and pages)."""
from __future__ import annotations

import django_filters
import django_filters.rest_framework
from django import forms
from django.db import models

from .fields import MAX_BIGINT


class IdField(forms.IntegerField):
    """A row id: a whole number from 1 to MAX_BIGINT."""

    default_error_messages = {"invalid": "Enter a number."}  # as the NumberFilter it replaces says

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_BIGINT)
        super().__init__(*args, **kwargs)


class BooleanField(forms.Field):
    """A yes/no filter value: ``true``/``false`` or ``1``/``0``, in any case; empty is no filter."""

    default_error_messages = {"invalid": "Enter true or false."}
    VALUES = {"true": True, "1": True, "false": False, "0": False}

    def to_python(self, value):
        if value is None or isinstance(value, bool):
            return value
        if value == "":
            return None
        try:
            return self.VALUES[str(value).strip().lower()]
        except KeyError:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None


class BooleanFilter(django_filters.BooleanFilter):
    """A yes/no filter that reads ``1``/``0`` as ``true``/``false`` and refuses anything else.

    django-filter's own (a NullBooleanSelect) knows only ``true``/``false`` (and ``2``/``3``)
    and takes any other value for "no filter": ``?commercial=1`` listed every image, the
    non-commercial ones included, with a 200. Here it filters, and ``?commercial=maybe`` is a
    400 naming the filter."""

    field_class = BooleanField


class IdFilter(django_filters.NumberFilter):
    """Rows whose foreign key (``field_name``, e.g. ``spec_id``) is the given id.

    A number that cannot be an id is a 400 naming the filter: the ORM guards exact lookups
    on an id column against numbers beyond its range, but not lookups through a foreign
    key, so ``?spec=1e20`` would otherwise reach the database and fail there (a 500)."""

    field_class = IdField


class FilterSet(django_filters.rest_framework.FilterSet):
    """The FilterSet that a viewset's ``filterset_fields`` make: a model's yes/no column is a
    strict :class:`BooleanFilter` (``?allows_commercial=maybe`` listed every licence with a 200)."""

    FILTER_DEFAULTS = {**django_filters.rest_framework.FilterSet.FILTER_DEFAULTS,
                       models.BooleanField: {"filter_class": BooleanFilter}}


class FilterBackend(django_filters.rest_framework.DjangoFilterBackend):
    """DRF's django-filter backend, building ``filterset_fields`` FilterSets on :class:`FilterSet`."""

    filterset_base = FilterSet
