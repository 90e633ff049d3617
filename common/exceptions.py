"""Turn service-layer ValidationErrors into HTTP 400 responses naming the field."""
from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions
from rest_framework.exceptions import ErrorDetail
from rest_framework.views import exception_handler as drf_exception_handler

_SURROGATE = re.compile("[\ud800-\udfff]")


def validation_error_detail(exc: DjangoValidationError) -> dict | list:
    if hasattr(exc, "error_dict"):
        return {field: [str(m) for e in errors for m in e.messages] for field, errors in exc.error_dict.items()}
    return {"non_field_errors": [str(m) for m in exc.messages]}


def encodable(value):
    """`value` (an error's data) with every lone surrogate replaced by U+FFFD.

    Error messages quote the input ('"\\ud800" is not a valid choice.'); JSON parses such a
    lone surrogate from its "\\ud800" escape, and the JSON renderer, which writes UTF-8, could
    not encode the message: the refusal itself would become a 500."""
    if isinstance(value, str):
        if not _SURROGATE.search(value):
            return value
        text = _SURROGATE.sub("\ufffd", value)
        return ErrorDetail(text, code=value.code) if isinstance(value, ErrorDetail) else text
    if isinstance(value, dict):
        return {encodable(k): encodable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encodable(v) for v in value]
    return value


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_code = "payload_too_large"


def too_big(request) -> PayloadTooLarge:
    """A body over DATA_UPLOAD_MAX_MEMORY_SIZE, as a 413 that says both sizes (Django itself
    answers an HTML 400 that names nothing, which a page cannot show its user)."""
    try:
        sent = f"{int(request.META.get('CONTENT_LENGTH') or 0):,} bytes"
    except ValueError:
        sent = "too large"
    return PayloadTooLarge(f"The request body is {sent}; at most {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} "
                           "bytes are accepted (DATA_UPLOAD_MAX_MEMORY_SIZE).")


def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        exc = too_big(context["request"])
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(validation_error_detail(exc))
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is not None:
        response.data = encodable(response.data)
    return response
