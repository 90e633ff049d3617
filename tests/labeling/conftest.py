"""Fixtures for the labeling tests: a vendor with people, a batch, API clients."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from common import roles
from tests import factories


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def reviewer(vendor):
    return factories.make_user(roles.REVIEWER, vendor=vendor)


@pytest.fixture
def manager(vendor):
    return factories.make_user(roles.VENDOR_MANAGER, vendor=vendor)


@pytest.fixture
def batch(vendor, spec):
    return factories.make_batch(spec, vendor, images=3)


@pytest.fixture
def annotator_api(annotator):
    return client_for(annotator)


@pytest.fixture
def reviewer_api(reviewer):
    return client_for(reviewer)



@pytest.fixture
def submitted(vendor, spec, annotator):
    """Three submitted annotations of the vendor, oldest first (the review queue's tests)."""
    from labeling import services
    from tests import factories
    from tests.factories import quad

    factories.make_batch(spec, vendor, images=3)
    out = []
    for _ in range(3):
        task = services.task_claim_next(annotator=annotator).task
        out.append(services.annotation_create(task=task, annotator=annotator, submit=True, regions=[quad()]))
    return out
