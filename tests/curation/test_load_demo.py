"""manage.py load_demo: every role can log in, every kind has images, a second run adds nothing."""
from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.core.management import call_command

from common import roles
from curation.demo import DEMO_USERS
from curation.models import Category, DatasetSpec, Image, Licence, Source
from labeling.models import Vendor, VendorMembership

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # The demo makes five users; the production hasher costs ~0.7 s each.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def load(*args) -> str:
    out = StringIO()
    call_command("load_demo", *args, stdout=out)
    return out.getvalue()


def counts() -> dict[str, int]:
    return {
        "users": User.objects.count(), "vendors": Vendor.objects.count(), "specs": DatasetSpec.objects.count(),
        "sources": Source.objects.count(), "images": Image.objects.count(), "categories": Category.objects.count(),
        "image_categories": Image.categories.through.objects.count(),
    }


def assert_demo_is_complete(out: str) -> None:
    for username, role, password in DEMO_USERS:
        assert f"{username}" in out and password in out
        user = authenticate(username=username, password=password)
        assert user is not None and roles.has_role(user, role), username
        assert len(password) >= 8
        if role in roles.VENDOR_ROLES:
            assert VendorMembership.objects.get(user=user).vendor.name == "Acme Labeling"
    research = DatasetSpec.objects.get(name="School math formulas (demo)")
    assert research.intended_use == "research"
    kinds = {c.slug: c for c in research.categories.all()}
    assert set(kinds) == {"printed", "handwritten", "shadow", "highlighter", "whiteout"}
    for slug, category in kinds.items():
        assert category.target_quota > 0 and category.images.count() > 0, slug
    commercial = DatasetSpec.objects.get(intended_use="commercial")
    req = {r.metric: r.threshold for r in commercial.requirements.all()}
    assert req["exact_match"] >= 0.9
    assert commercial.max_ms_per_image and commercial.target_qps and commercial.serving_target
    # The licence check held: nothing in the commercial spec forbids commercial use.
    assert commercial.images.exists()
    assert not commercial.images.filter(source__licence__allows_commercial=False).exists()
    families = set(Source.objects.values_list("licence__family", flat=True))
    assert families >= {f.value for f in Licence.Family}
    assert Image.objects.exclude(truth_latex="").count() == Image.objects.count()
    # The annotator login has work at once: an active batch and a published guide.
    from guides.models import GuideVersion
    from labeling.models import Batch

    batch = Batch.objects.get(vendor__name="Acme Labeling", spec=research)
    assert batch.status == "active" and batch.tasks.count() == 20
    assert GuideVersion.objects.filter(guide__spec=research, published_at__isnull=False).count() == 1


def test_generated_demo_is_complete_and_idempotent():
    out = load("--no-real-data")
    assert "generated images only" in out
    assert_demo_is_complete(out)
    first = counts()
    assert 40 <= first["images"] <= 120
    again = load("--no-real-data")
    assert "0 images added" in again
    assert counts() == first


def test_demo_with_real_data_uses_crohme_and_im2markup(shared_data, settings):
    settings.MATHSET_SHARED_DATA = shared_data
    out = load()
    assert "real data from" in out
    assert_demo_is_complete(out)
    research = DatasetSpec.objects.get(name="School math formulas (demo)")
    inks = research.images.filter(source__name="CROHME 2016")
    assert inks.count() >= 20 and all(im.meta.get("inkml") for im in inks)
    pages = Image.objects.filter(source__name="im2markup (Harvard NLP)")
    assert pages.filter(spec__intended_use="commercial").exists()
    assert all("ink_bbox" in im.meta for im in pages)
    first = counts()
    load()
    assert counts() == first
