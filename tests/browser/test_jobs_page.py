"""The pre-labeling jobs page in a real browser: a running job's row follows the API live and,
once the job is over, drops its Cancel button and says that images failed."""
from __future__ import annotations

import pytest
from django.utils import timezone

from common import roles
from pipeline.models import PrelabelItem, PrelabelJob
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_a_job_finishing_while_watched_loses_its_cancel_button_and_reports_failures(browser_page):
    curator = factories.make_user(roles.CURATOR)
    spec = factories.make_spec()
    images = [factories.make_image(spec=spec) for _ in range(2)]
    job = PrelabelJob.objects.create(spec=spec, status=PrelabelJob.Status.RUNNING, total=2, created_by=curator,
                                     started_at=timezone.now())
    items = [PrelabelItem.objects.create(job=job, image=image) for image in images]
    page = browser_page(curator)
    page.goto("/pipeline/jobs/")
    row = f'#jobs tr[data-job="{job.pk}"]'
    assert page.locator(f"{row} button", has_text="Cancel").count() == 1

    PrelabelItem.objects.filter(pk=items[0].pk).update(status="done", finished_at=timezone.now())
    PrelabelItem.objects.filter(pk=items[1].pk).update(status="failed", error="UnidentifiedImageError: x")
    PrelabelJob.objects.filter(pk=job.pk).update(status=PrelabelJob.Status.DONE, finished_at=timezone.now())
    page.wait_for_function(f"() => document.querySelector('{row} .status').textContent === 'done'", timeout=15000)
    assert page.locator(f"{row} button", has_text="Cancel").count() == 0
    assert page.locator(f'[data-failures-of="{job.pk}"]').inner_text() == "1 image failed: reload to see why"
    page.click(f'[data-failures-of="{job.pk}"] a')
    page.wait_for_selector(f'[data-failures-of="{job.pk}"] details')
    assert "UnidentifiedImageError: x" in page.locator(f'[data-failures-of="{job.pk}"]').inner_text()
    assert not page.errors, page.errors
