from django.urls import path

from . import views

app_name = "pipeline"
urlpatterns = [
    path("pipeline/jobs/", views.jobs_page, name="jobs"),
    path("pipeline/jobs/start/", views.job_start, name="job-start"),
    path("pipeline/jobs/<int:pk>/cancel/", views.job_cancel, name="job-cancel"),
    path("evaluations/", views.evaluation_list, name="evaluations"),
    path("evaluations/start/", views.evaluation_start, name="evaluation-start"),
    path("evaluations/<int:pk>/", views.evaluation_detail, name="evaluation-detail"),
    path("evaluations/<int:pk>/cancel/", views.evaluation_cancel, name="evaluation-cancel"),
    path("evaluations/<int:pk>/samples/", views.evaluation_samples, name="evaluation-samples"),
    path("specs/<int:pk>/qa/", views.spec_qa, name="spec-qa"),
    path("specs/<int:pk>/qa/recompute/", views.spec_qa_recompute, name="spec-qa-recompute"),
]
