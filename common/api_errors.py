"""What a script calling the API gets when it misses: JSON, and its POST kept.

- A 404 or 500 under /api/ answers JSON (``{"detail": ...}``) like every other API error,
  not the site's HTML page a browser gets.
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
    docstring); placed before CommonMiddleware, whose 301 would turn it into a GET."""

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
        return self.get_response(request)


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
