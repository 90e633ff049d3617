"""Curator pages. Namespaced: the API router already uses names like spec-list."""
from django.urls import path

from . import snapshot_pages, views

app_name = "curation"
urlpatterns = [
    path("specs/", views.spec_list, name="spec-list"),
    path("specs/new/", views.spec_create, name="spec-create"),
    path("specs/<int:pk>/", views.spec_detail, name="spec-detail"),
    path("specs/<int:pk>/edit/", views.spec_update, name="spec-update"),
    path("sources/", views.source_list, name="source-list"),
    path("sources/new/", views.source_create, name="source-create"),
    path("sources/<int:pk>/edit/", views.source_update, name="source-update"),
    path("licences/", views.licence_list, name="licence-list"),
    path("images/", views.image_list, name="image-list"),
    path("images/<int:pk>/", views.image_detail, name="image-detail"),
    path("images/<int:pk>/takedown/", views.image_takedown, name="image-takedown"),
    path("takedowns/", views.takedown_list, name="takedown-list"),
    path("upload/", views.upload, name="upload"),
    path("imports/", views.import_job_list, name="import-job-list"),
    path("snapshots/", snapshot_pages.snapshot_list, name="snapshot-list"),
    path("snapshots/new/", snapshot_pages.snapshot_create, name="snapshot-create"),
    path("snapshots/<int:pk>/", snapshot_pages.snapshot_detail, name="snapshot-detail"),
    path("snapshots/<int:pk>/exports/", snapshot_pages.snapshot_export_create, name="snapshot-export-create"),
    # No login: the signed token is the permission (curation/signed_urls.py).
    path("signed-files/<str:token>/", views.signed_file, name="signed-file"),
    path("snapshots/<int:pk>/rebuild-check/", snapshot_pages.snapshot_rebuild_check, name="snapshot-rebuild-check"),
]
