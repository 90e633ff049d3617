"""Labeling pages (the API lives in labeling/api/urls.py)."""
from django.urls import path

from . import views

urlpatterns = [
    path("work/", views.my_work, name="my_work"),
    path("batches/", views.batch_overview, name="batch_overview"),
    path("label/<int:task_id>/", views.label_task, name="label_task"),
    path("review/", views.review, name="review_next"),
    path("review/<int:annotation_id>/", views.review, name="review_annotation"),
]
