"""Pages of guides, questions and answers, notifications and contracts."""
from django.urls import path

from . import views

app_name = "guides"
urlpatterns = [
    path("guides/", views.guide_list, name="list"),
    path("guides/new/", views.guide_create, name="create"),
    path("guides/<int:pk>/", views.guide_detail, name="detail"),
    path("guides/for-spec/<int:spec_id>/", views.guide_for_spec, name="for-spec"),
    path("guides/<int:pk>/diff/", views.guide_diff, name="diff"),
    path("guides/<int:pk>/versions/new/", views.version_create, name="version-create"),
    path("guide-versions/<int:pk>/edit/", views.version_edit, name="version-edit"),
    path("guide-versions/<int:pk>/examples/", views.version_example_add, name="version-example-add"),
    path("guide-versions/<int:pk>/publish/", views.version_publish, name="version-publish"),
    path("guide-versions/<int:pk>/acknowledge/", views.version_acknowledge, name="version-acknowledge"),
    path("guide-versions/<int:pk>/readers/", views.version_readers, name="version-readers"),
    path("questions/", views.question_list, name="questions"),
    path("questions/new/", views.question_create, name="question-create"),
    path("questions/<int:pk>/", views.question_detail, name="question"),
    path("notifications/", views.notification_list, name="notifications"),
    path("notifications/<int:pk>/", views.notification_open, name="notification-open"),
    path("contracts/", views.contract_list, name="contracts"),
    path("contracts/report/", views.cost_report, name="cost-report"),
]
