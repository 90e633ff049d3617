"""URL map: pages, the REST API under /api/v1/, the OpenAPI schema and docs."""
from csp.decorators import csp_replace
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from common.views import AdminLoginForm, LoginView

# The admin's login says so when common.login_limits refuses an attempt, as the login page does.
admin.site.login_form = AdminLoginForm

# Django tries the patterns in order; the annotators' endpoints (next task, submit) are
# the busiest, so labeling's come right after common's, whose router root answers
# /api/v1/. Apart from the routers' roots the prefixes are disjoint, so the order
# changes no answer (tests/common/test_urls.py checks it), only the time to find it.
api_v1 = [
    path("", include("common.api.urls")),
    path("", include("labeling.api.urls")),
    path("", include("curation.api.urls")),
    path("", include("guides.api.urls")),
    path("", include("pipeline.api.urls")),
]

# ReDoc runs its search in a Web Worker it builds from a blob: URL; only its page allows that
# (the policy's worker-src otherwise falls back to script-src 'self'), in either header mode.
_REDOC_WORKERS = {"worker-src": ["'self'", "blob:"]}
redoc_view = csp_replace(_REDOC_WORKERS)(csp_replace(_REDOC_WORKERS, REPORT_ONLY=True)(
    SpectacularRedocView.as_view(url_name="schema")))

# Errors under /api/ answer JSON (common.api_errors), pages keep the site's templates.
handler404 = "common.api_errors.page_not_found"
handler500 = "common.api_errors.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script at /api/docs/?script= instead of inline:
    # the Content-Security-Policy (config/settings.py) allows scripts from the site's files only.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", redoc_view, name="api-redoc"),
    path("", include("common.urls")),
    path("", include("curation.urls")),
    path("", include("labeling.urls")),
    path("", include("guides.urls")),
    path("", include("pipeline.urls")),
]
