"""Labeling pages (the API lives in labeling/api/urls.py)."""
from django.urls import path

from . import views

urlpatterns = [
    path("work/", views.my_work, name="my_work"),
    path("batches/", views.batch_overview, name="batch_overview"),
    # curators: a new batch (GET matches/: how many images its filter matches), a batch's changes
    path("batches/new/", views.batch_create, name="batch_create"),
    path("batches/new/matches/", views.batch_matches, name="batch_matches"),
    path("batches/<int:pk>/edit/", views.batch_edit, name="batch_edit"),
    path("label/<int:task_id>/", views.label_task, name="label_task"),
    # GET: the queue's state, takes nothing; POST review/next/: hold the next one, 303 to it
    path("review/", views.review_queue, name="review_next"),
    path("review/next/", views.review_take_next, name="review_take_next"),
    path("review/<int:annotation_id>/", views.review, name="review_annotation"),
]
