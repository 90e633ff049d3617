"""The curator's pre-labeling page: lists jobs with progress, starts and cancels through services."""
from __future__ import annotations

from django.test import Client

from pipeline.models import PrelabelJob
from tests import factories


def _client(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


def test_curator_sees_job_progress_and_can_start_and_cancel(curator, spec, source, django_capture_on_commit_callbacks):
    factories.make_image(spec=spec, source=source)
    c = _client(curator)
    with django_capture_on_commit_callbacks(execute=False):
        resp = c.post("/pipeline/jobs/start/", {"spec": spec.id})
    assert resp.status_code == 302
    job = PrelabelJob.objects.get()
    page = c.get("/pipeline/jobs/")
    assert page.status_code == 200
    assert f'data-job="{job.id}"' in page.content.decode() and "0/1" in page.content.decode()
    assert c.post(f"/pipeline/jobs/{job.id}/cancel/").status_code == 302
    job.refresh_from_db()
    assert job.status == PrelabelJob.Status.CANCELLED


def test_vendor_users_cannot_open_the_page(annotator):
    assert _client(annotator).get("/pipeline/jobs/").status_code == 403


def test_model_team_sees_but_cannot_start(model_team, spec):
    c = _client(model_team)
    assert c.get("/pipeline/jobs/").status_code == 200
    assert c.post("/pipeline/jobs/start/", {"spec": spec.id}).status_code == 403


def test_starting_a_job_for_a_spec_id_that_is_not_a_number_answers_404(curator):
    from pipeline.models import PrelabelJob

    assert _client(curator).post("/pipeline/jobs/start/", {"spec": "x1"}).status_code == 404
    assert not PrelabelJob.objects.exists()


def test_the_jobs_page_reads_failures_in_one_query_however_many_jobs_failed(curator, spec, source,
                                                                             django_assert_max_num_queries):
    from django.utils import timezone

    from pipeline.models import PrelabelItem, PrelabelJob

    def failed_job():
        job = PrelabelJob.objects.create(spec=spec, status=PrelabelJob.Status.DONE, total=2, created_by=curator,
                                         finished_at=timezone.now())
        for _ in range(2):
            PrelabelItem.objects.create(job=job, image=factories.make_image(spec=spec, source=source),
                                        status="failed", error="UnidentifiedImageError: x")
        return job

    client = Client()
    client.force_login(curator)
    failed_job()
    with django_assert_max_num_queries(30) as few:
        assert client.get("/pipeline/jobs/").status_code == 200
    jobs = [failed_job() for _ in range(3)]
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = client.get("/pipeline/jobs/").content.decode()
    assert all(f'data-failures-of="{job.pk}"' in page for job in jobs)
