"""Check API responses against the project's own OpenAPI schema (drf-spectacular).

`SchemaChecker(spec).check(response)` finds the operation for the request's path
and method, and validates the JSON body against the schema declared for its
status code with openapi-schema-validator (OpenAPI 3.0 rules: nullable, etc.).
"""
from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

URN = "urn:mathset-api"


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _nullable_refs(node):
    """drf-spectacular writes a nullable nested object as {"allOf": [ref], "nullable": true};
    OpenAPI 3.0.3 means "null or ref", which plain validators do not infer. Spell it out."""
    if isinstance(node, dict):
        node = {k: _nullable_refs(v) for k, v in node.items()}
        if node.get("nullable") and "allOf" in node and "type" not in node:
            rest = {k: v for k, v in node.items() if k not in ("allOf", "nullable")}
            return {**rest, "anyOf": [{"allOf": node["allOf"]}, {"enum": [None]}]}
        return node
    if isinstance(node, list):
        return [_nullable_refs(v) for v in node]
    return node


class SchemaChecker:
    def __init__(self, spec: dict):
        spec = _nullable_refs(spec)
        self.spec = spec
        self.registry = Registry().with_resource(URN, Resource.from_contents(spec, default_specification=DRAFT4))
        self.routes = [
            (re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(path)) + "$"), path)
            for path in spec["paths"]
        ]
        self.checked: set[tuple[str, str, int]] = set()

    def template_for(self, path: str) -> str:
        # Literal segments beat parameters (tasks/next/ before tasks/{id}/).
        matches = [tpl for rx, tpl in self.routes if rx.match(path)]
        if not matches:
            raise AssertionError(f"{path} is not in the OpenAPI schema")
        return min(matches, key=lambda t: t.count("{"))

    def check(self, response) -> None:
        request = response.wsgi_request
        path = urlsplit(request.get_full_path()).path
        method = request.method.lower()
        template = self.template_for(path)
        operation = self.spec["paths"][template].get(method)
        assert operation is not None, f"{method.upper()} {template} is not in the schema"
        code = str(response.status_code)
        responses = operation["responses"]
        assert code in responses, f"{method.upper()} {template} answered {code}, not in the schema ({sorted(responses)})"
        content = responses[code].get("content")
        if not content:
            assert not response.content, f"{method.upper()} {template} {code} has a body the schema does not declare"
        else:
            assert "application/json" in content, content.keys()
            pointer = _pointer("paths", template, method, "responses", code, "content", "application/json", "schema")
            validator = OAS30Validator({"$ref": f"{URN}#/{pointer}"}, registry=self.registry,
                                       format_checker=oas30_format_checker)
            body = json.loads(response.content)
            errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
            assert not errors, f"{method.upper()} {path} {code}: " + "; ".join(
                f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5])
        self.checked.add((method, template, response.status_code))
