"""What a script calling the API gets when it misses: JSON, and its POST kept.

- A 404 or 500 under /api/ answers JSON (``{"detail": ...}``) like every other API error,
  not the site's HTML page a browser gets; a URL that names no view does so with DEBUG on
  too (``make run``), where Django answers its HTML debug page instead of calling handler404.
- An unsafe request (POST, PUT, PATCH, DELETE) to an API URL without its trailing slash is
  redirected with 308, which keeps the method and the body. Django's APPEND_SLASH answers
  301, which HTTP clients follow with a GET: ``POST /api/v1/exports`` listed the exports
  and created nothing, with a 200.
"""
from __future__ import annotations

from django.http import HttpResponseRedirect, JsonResponse
from django.urls import Resolver404, resolve
from django.views import defaults

API_PREFIX = "/api/"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class HttpResponsePermanentRedirectKeepingMethod(HttpResponseRedirect):
    status_code = 308


class ApiTrailingSlashMiddleware:
    """Redirect an unsafe API request missing its trailing slash with 308 (see the module
    docstring); placed before CommonMiddleware, whose 301 would turn it into a GET. An API URL
    that resolves to no view answers the JSON 404 whatever DEBUG says."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        path = request.path_info
        if path.startswith(API_PREFIX) and not path.endswith("/") and request.method not in SAFE_METHODS:
            try:
                resolve(path + "/")
            except Resolver404:
                pass
            else:
                query = request.META.get("QUERY_STRING", "")
                target = request.path + "/" + (f"?{query}" if query else "")
                return HttpResponsePermanentRedirectKeepingMethod(target)
        response = self.get_response(request)
        if response.status_code == 404 and request.resolver_match is None and path.startswith(API_PREFIX):
            # No view was found: with DEBUG on, Django's HTML "Page not found" page, not handler404.
            return page_not_found(request, None)
        return response


def page_not_found(request, exception):
    """handler404: JSON under /api/, the site's page elsewhere."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    """handler500: JSON under /api/, the site's page elsewhere."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "Server error."}, status=500)
    return defaults.server_error(request)
