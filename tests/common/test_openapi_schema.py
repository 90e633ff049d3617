"""The OpenAPI schema is valid, covers every API URL, and responses match it."""
import json

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from openapi_spec_validator import validate

from tests.factories import make_image

pytestmark = pytest.mark.django_db


def _api_routes(patterns=None, prefix=""):
    for p in patterns if patterns is not None else get_resolver().url_patterns:
        route = prefix + str(p.pattern)
        if isinstance(p, URLResolver):
            yield from _api_routes(p.url_patterns, route)
        elif isinstance(p, URLPattern) and route.startswith("api/v1/"):
            yield route


def _normalise(route: str) -> str:
    """Django route or OpenAPI path → comparable form: params as {}, no format suffix."""
    import re

    route = route.replace("^", "").replace("$", "")
    route = re.sub(r"\(\?P<[^>]+>[^)]+\)", "{}", route)
    route = re.sub(r"<[^>]+>", "{}", route)
    route = re.sub(r"\{[^}]*\}", "{}", route)
    return "/" + route.lstrip("/")


def test_schema_is_valid_openapi_3(curator_api):
    r = curator_api.get("/api/schema/?format=json")
    assert r.status_code == 200
    schema = json.loads(r.content)
    validate(schema)
    assert schema["openapi"].startswith("3.")


def test_schema_covers_every_api_url(curator_api):
    schema = json.loads(curator_api.get("/api/schema/?format=json").content)
    documented = {_normalise(p) for p in schema["paths"]}
    routes = {_normalise(r) for r in _api_routes() if "format" not in r and r != "api/v1/"}
    routes = {r for r in routes if r != "/api/v1/"}
    missing = sorted(r for r in routes if r not in documented)
    assert not missing, f"API URLs missing from the schema: {missing}"
    assert len(routes) > 10


def test_curation_responses_match_schema(curator_api, spec, source):
    from tests.schema import assert_response_matches_schema

    image = make_image(spec=spec, source=source)
    for url in ["/api/v1/specs/", f"/api/v1/specs/{spec.id}/", "/api/v1/sources/", "/api/v1/licences/",
                f"/api/v1/images/{image.id}/", "/api/v1/images/", "/api/v1/categories/", "/api/v1/users/me/",
                "/api/v1/vendors/"]:
        response = curator_api.get(url)
        assert response.status_code == 200, url
        assert_response_matches_schema(response)


def test_interactive_docs_are_served_without_a_cdn(client, curator):
    client.force_login(curator)
    page = client.get("/api/docs/")
    assert page.status_code == 200 and b"swagger-ui" in page.content
    assert b"cdn.jsdelivr" not in page.content


def test_schema_generates_without_warnings(tmp_path):
    """Component name clashes and untyped fields make drf-spectacular warn; they
    give model teams a wrong schema, so any warning fails."""
    from django.core.management import call_command

    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(tmp_path / "schema.yml"))


def test_patch_requests_offer_no_create_only_input_and_mark_fields_fixed_after_create(curator_api):
    """A PATCH that sends a create-only field is a 400: the schema must not offer it as an input
    the update takes, and says which fields may only be sent back as stored."""
    schema = json.loads(curator_api.get("/api/schema/?format=json").content)

    def patch_request(path):
        ref = schema["paths"][path]["patch"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        return schema["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]

    spec_patch = patch_request("/api/v1/specs/{id}/")
    assert "default_quota" not in spec_patch and "custom_categories" not in spec_patch
    assert "requirement" in spec_patch
    for path, fixed in [("/api/v1/contracts/{id}/", ("vendor", "spec")), ("/api/v1/categories/{id}/", ("spec", "slug"))]:
        props = patch_request(path)
        assert all("cannot be changed" in props[f]["description"] for f in fixed), path
