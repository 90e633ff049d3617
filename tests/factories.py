"""Factories for tests and benchmarks: real rows through the real services."""
from __future__ import annotations

import io
import itertools

import factory
from django.contrib.auth.models import User
from PIL import Image as PILImage
from PIL import ImageDraw

from common import roles
from common.services import user_create
from curation import services as curation_services
from curation.models import DatasetSpec, Licence, Source
from labeling.models import Vendor
from labeling.services import vendor_create

_seq = itertools.count(1)


def png_bytes(width: int = 120, height: int = 60, seed: int | None = None, fmt: str = "PNG", **save_kw) -> bytes:
    """A small image with distinct content per seed (so sha256 differs)."""
    seed = next(_seq) if seed is None else seed
    img = PILImage.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.text((4, 4), f"x^{seed}+{seed % 7}", fill=(0, 0, 0))
    draw.line((0, seed % height, width - 1, (seed * 7) % height), fill=((seed * 37) % 255, 0, 0), width=2)
    buf = io.BytesIO()
    img.save(buf, fmt, **save_kw)
    return buf.getvalue()


def make_user(role: str, *, vendor: Vendor | None = None, username: str | None = None) -> User:
    if role in roles.VENDOR_ROLES and vendor is None:
        vendor = make_vendor()
    return user_create(username=username or f"{role}{next(_seq)}", password="pass-word-123", role=role,
                       vendor=vendor if role in roles.VENDOR_ROLES else None)


def make_vendor(name: str | None = None) -> Vendor:
    return vendor_create(name=name or f"Vendor {next(_seq)}")


def licence(code: str) -> Licence:
    return Licence.objects.get(code=code)


def make_source(licence_code: str = "cc-by-4.0", **kw) -> Source:
    n = next(_seq)
    defaults = dict(name=f"Source {n}", kind=Source.Kind.PUBLIC_DATASET, copyright_holder=f"Holder {n}")
    defaults.update(kw)
    if licence_code.startswith("contract"):
        defaults.setdefault("contract_reference", f"C-{n}")
    return curation_services.source_create(licence=licence(licence_code), **defaults)


def make_spec(intended_use: str = DatasetSpec.IntendedUse.COMMERCIAL, **kw) -> DatasetSpec:
    n = next(_seq)
    defaults = dict(name=f"Spec {n}", requirement="Read photographed school-math formulas into LaTeX",
                    answer_formats=["quad", "latex"], default_quota=10)
    defaults.update(kw)
    return curation_services.spec_create(intended_use=intended_use, **defaults)


def make_image(spec=None, source=None, categories=("printed",), **kw):
    spec = spec or make_spec()
    source = source or make_source()
    image, _ = curation_services.image_ingest(spec=spec, source=source, data=kw.pop("data", None) or png_bytes(),
                                              filename=kw.pop("filename", "img.png"), categories=categories, **kw)
    return image


class UserFactory(factory.django.DjangoModelFactory):
    """A plain user with no role (for negative tests)."""

    class Meta:
        model = User

    username = factory.Sequence(lambda n: f"user{n}")


# ---------------------------------------------------------------- labeling


def make_batch(spec=None, vendor=None, *, images: int = 3, overlap: int = 1, kind: str = "full", **kw):
    """A batch of `images` fresh images of `spec` for `vendor`, through the real service."""
    from decimal import Decimal

    from labeling.services import batch_create

    spec = spec or make_spec()
    vendor = vendor or make_vendor()
    source = kw.pop("source", None) or make_source()
    for _ in range(images):
        make_image(spec=spec, source=source, data=png_bytes(200, 100))
    from guides.models import Contract

    # Under a contract the batch takes the contract's price; otherwise it needs its own.
    default_price = None if Contract.objects.filter(vendor=vendor, spec=spec).exists() else Decimal("0.25")
    return batch_create(spec=spec, vendor=vendor, name=kw.pop("name", f"Batch {next(_seq)}"),
                        unit_price=kw.pop("unit_price", default_price), quantity=kw.pop("quantity", images),
                        overlap=overlap, kind=kind, **kw)


def quad(x0: float = 10, y0: float = 10, x1: float = 90, y1: float = 40, latex: str = r"x^{2}+1", **kw) -> dict:
    """A quadrilateral region inside a 200x100 image."""
    return {"kind": "quad", "points": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]], "latex": latex, **kw}


# ---------------------------------------------------------------- guides


def make_contract(vendor=None, spec=None, **kw):
    """A contract (so the vendor works on the spec and may read its guide)."""
    import datetime as dt
    from decimal import Decimal

    from guides.services import contract_create

    defaults = dict(price_regions=Decimal("0.10"), price_latex=Decimal("0.25"), price_full=Decimal("0.30"),
                    agreed_quantity=1000, starts_on=dt.date(2026, 1, 1), deadline=dt.date(2026, 12, 31),
                    currency="USD")
    defaults.update(kw)
    return contract_create(vendor=vendor or make_vendor(), spec=spec or make_spec(), **defaults)


def make_guide(spec=None, body: str = "Draw one quad per formula.", publish: bool = True, by=None, title: str = ""):
    """A guide with a first version, published unless `publish` is False. Returns the version."""
    from guides.services import guide_create, guide_version_publish

    spec = spec or make_spec()
    by = by or make_user(roles.CURATOR)
    guide = guide_create(spec=spec, title=title or f"Guide for {spec.name}", created_by=by, body_md=body,
                         change_notes="First version")
    version = guide.versions.get()
    return guide_version_publish(version=version, by=by) if publish else version


def make_snapshot(*, spec, name: str | None = None, created_by=None, **kw):
    """A snapshot of `spec` requested and then built through the real services, as the worker does."""
    from curation import snapshots

    snapshot = snapshots.snapshot_create(spec=spec, name=name or f"Snapshot {next(_seq)}", created_by=created_by,
                                         **kw)
    return snapshots.snapshot_build(snapshot=snapshot)
