"""Validate API responses against the project's own OpenAPI schema."""
from __future__ import annotations

import functools
import json

from openapi_core import OpenAPI
from openapi_core.contrib.django import DjangoOpenAPIRequest, DjangoOpenAPIResponse


@functools.cache
def openapi() -> OpenAPI:
    """The schema exactly as /api/schema/ serves it, parsed once per test run."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return OpenAPI.from_dict(json.loads(json.dumps(schema, default=str)))


def assert_response_matches_schema(response) -> None:
    """Raise if `response` (from APIClient) does not match its operation in the schema."""
    spec = openapi()
    request = DjangoOpenAPIRequest(response.wsgi_request)
    spec.validate_response(request, DjangoOpenAPIResponse(response))
