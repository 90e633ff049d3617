from django.urls import path

from . import views

app_name = "pipeline"
urlpatterns = [
    path("pipeline/jobs/", views.jobs_page, name="jobs"),
    path("pipeline/jobs/start/", views.job_start, name="job-start"),
    path("pipeline/jobs/<int:pk>/cancel/", views.job_cancel, name="job-cancel"),
    path("specs/<int:pk>/qa/", views.spec_qa, name="spec-qa"),
    path("specs/<int:pk>/qa/recompute/", views.spec_qa_recompute, name="spec-qa-recompute"),
]
