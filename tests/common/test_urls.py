"""The API's URL includes may be ordered for speed: apart from the routers' roots,
no two of them answer the same path."""
from __future__ import annotations

from django.urls import resolve

from config.urls import api_v1


def _first_segment(pattern) -> str:
    return str(pattern.pattern).lstrip("^").split("/")[0].split("\\")[0]


def test_api_includes_share_no_route_but_their_roots():
    roots = {"", "<drf_format_suffix:format>"}  # each DefaultRouter's API root (the first include's answers)
    seen: dict[str, str] = {}
    for include in api_v1:
        for segment in {_first_segment(p) for p in include.url_patterns} - roots:
            assert segment not in seen, f"{segment!r} is routed by {seen[segment]} and {include.urlconf_name}"
            seen[segment] = include.urlconf_name
    assert api_v1[0].urlconf_name.__name__ == "common.api.urls"


def test_busy_and_other_endpoints_resolve_to_their_own_views():
    assert resolve("/api/v1/").func.cls.__module__ == "rest_framework.routers"
    assert resolve("/api/v1/").url_name == "api-root"
    assert resolve("/api/v1/tasks/next/").url_name == "task-next"
    assert resolve("/api/v1/annotations/").url_name == "annotation-list"
    assert resolve("/api/v1/annotations/7/submit/").url_name == "annotation-submit"
    assert resolve("/api/v1/users/").url_name == "user-list"
    assert resolve("/api/v1/images/").url_name == "image-list"
    assert resolve("/api/v1/predictions/").url_name == "prediction-list"
    assert resolve("/api/v1/model-predictions/").url_name == "model-prediction-list"
