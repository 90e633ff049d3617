"""Render one object with a DRF serializer without rebuilding its fields each time.

A DRF serializer instance builds its fields on first use: a deep copy of the
declared ones and, for a ModelSerializer, one field per model field found by
introspection. For the hot endpoints (`tasks/next/`, a submit) that building costs
more CPU than the rendering itself. `represent` keeps one bound serializer per
class and thread and only swaps its context, so the output is exactly what
`Serializer(instance, context=...).data` gives, from the same field code.
"""
from __future__ import annotations

import threading

_local = threading.local()


def represent(serializer_class, instance, context: dict | None = None) -> dict:
    """`serializer_class(instance, context=context).data`, with the fields built once per thread."""
    cache = _local.__dict__.setdefault("serializers", {})
    serializer = cache.get(serializer_class)
    if serializer is None:
        serializer = cache[serializer_class] = serializer_class()
        serializer.fields  # noqa: B018  (build and bind the fields now, once)
    # Nested fields read the context from their root serializer: this one.
    serializer._context = context or {}
    try:
        return serializer.to_representation(instance)
    finally:
        serializer._context = {}  # hold no request past the call
