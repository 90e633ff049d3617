"""Fixtures of the guides tests: a spec one vendor works on (via a contract) with a
published guide, and a second, foreign vendor."""
import pytest
from rest_framework.test import APIClient

from common import roles
from tests import factories


@pytest.fixture
def contract(vendor, spec):
    return factories.make_contract(vendor=vendor, spec=spec)


@pytest.fixture
def published(contract, curator):
    return factories.make_guide(spec=contract.spec, by=curator, body="# Rules\n\nDraw one quad per formula: $x^2$.")


@pytest.fixture
def annotator_api(annotator):
    client = APIClient()
    client.force_authenticate(annotator)
    return client


@pytest.fixture
def foreign_vendor(db):
    return factories.make_vendor()


@pytest.fixture
def foreign_annotator(foreign_vendor):
    return factories.make_user(roles.ANNOTATOR, vendor=foreign_vendor)


@pytest.fixture
def foreign_api(foreign_annotator):
    client = APIClient()
    client.force_authenticate(foreign_annotator)
    return client


@pytest.fixture
def example_image(spec, source):
    return factories.make_image(spec=spec, source=source, data=factories.png_bytes(200, 100))


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """Users are made through user_create (which hashes): a cheap hasher keeps the suite quick."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
