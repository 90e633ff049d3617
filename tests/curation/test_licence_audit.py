"""Licence audit: a commercial spec never gives out data its licence does not clear, whatever was
edited after the snapshot was frozen, and attribution travels with every file of every export."""
from __future__ import annotations

import io
import json
import re
import zipfile

import pytest

from curation import selectors, snapshots
from curation.exporters import FORMATS
from curation.models import DatasetSpec, Image, Licence
from tests import factories
from tests.curation.test_snapshots import accept_all

pytestmark = pytest.mark.django_db


def _spec_with(*sources, intended_use=DatasetSpec.IntendedUse.COMMERCIAL, per_source: int = 1) -> DatasetSpec:
    """A spec with `per_source` accepted images from each of `sources`."""
    spec = factories.make_spec(intended_use=intended_use)
    for source in sources:
        for k in range(per_source):
            factories.make_image(spec=spec, source=source,
                                 data=factories.png_bytes(200, 100, seed=1000 * source.pk + k))
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=0, quantity=len(sources) * per_source)
    assert accept_all(vendor) == len(sources) * per_source
    return spec


def _export(snapshot, fmt: str) -> tuple[zipfile.ZipFile, object]:
    buf = io.BytesIO()
    result = snapshots.export_build(snapshot=snapshot, format=fmt, dest=buf)
    return zipfile.ZipFile(io.BytesIO(buf.getvalue())), result


def _image_members(zf: zipfile.ZipFile) -> list[str]:
    return [n for n in zf.namelist() if n.lower().endswith((".png", ".jpg", ".jpeg", ".webp"))]


# ------------------------------------------------------------ non-commercial data after later edits


def test_commercial_export_leaves_out_images_whose_licence_was_edited_non_commercial_after_freeze(curator):
    lic = factories.licence("cc-by-4.0")
    spec = _spec_with(factories.make_source("cc-by-4.0"))
    snap = factories.make_snapshot(spec=spec, name="before", created_by=curator)
    # The catalogue entry is corrected in the admin (LicenceAdmin saves the model directly).
    Licence.objects.filter(pk=lic.pk).update(allows_commercial=False)
    for fmt in sorted(FORMATS):
        zf, result = _export(snap, fmt)
        assert (result.images, result.excluded_images) == (0, 1), fmt
        assert _image_members(zf) == [], fmt
    assert selectors.snapshot_items_left_out(curator, snap).count() == 1


def test_commercial_export_leaves_out_an_image_moved_to_a_non_commercial_source_after_freeze(curator, nc_source):
    spec = _spec_with(factories.make_source("cc-by-4.0"))
    snap = factories.make_snapshot(spec=spec, name="before", created_by=curator)
    # The image's provenance is corrected afterwards (ImageAdmin lets `source` be edited).
    Image.objects.filter(spec=spec).update(source=nc_source)
    zf, result = _export(snap, "jsonl")
    assert (result.images, result.excluded_images) == (0, 1)
    assert "licence" in result.excluded[0]["reason"] and "commercial" in result.excluded[0]["reason"]
    assert _image_members(zf) == []


def test_spec_switched_to_commercial_after_freeze_leaves_nc_items_out(curator, source, nc_source):
    spec = _spec_with(source, nc_source, intended_use=DatasetSpec.IntendedUse.RESEARCH)
    snap = factories.make_snapshot(spec=spec, name="research", created_by=curator)
    # spec_update refuses this while NC images exist; a direct write is the worst case.
    DatasetSpec.objects.filter(pk=spec.pk).update(intended_use=DatasetSpec.IntendedUse.COMMERCIAL)
    snap.refresh_from_db()
    snap.spec.refresh_from_db()
    for fmt in sorted(FORMATS):
        zf, result = _export(snap, fmt)
        assert (result.images, result.excluded_images) == (1, 1), fmt
        assert nc_source.name not in zf.read("ATTRIBUTION.md").decode()


def test_unknown_and_research_contract_licences_never_reach_a_commercial_export(curator, source):
    spec = _spec_with(source, intended_use=DatasetSpec.IntendedUse.RESEARCH)
    unknown = factories.make_source("unknown")
    research = factories.make_source("contract-research")
    extra = [factories.make_image(spec=spec, source=s, data=factories.png_bytes(200, 100, seed=77 + i))
             for i, s in enumerate((unknown, research))]
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=0, quantity=len(extra))
    accept_all(vendor)
    DatasetSpec.objects.filter(pk=spec.pk).update(intended_use=DatasetSpec.IntendedUse.COMMERCIAL)
    snap = factories.make_snapshot(spec=DatasetSpec.objects.get(pk=spec.pk), name="mix", created_by=curator)
    _, result = _export(snap, "coco")
    assert result.images == 1 and result.licences == {"cc-by-4.0": 1}
    assert {r["licence"] for r in result.excluded} == {"unknown", "contract-research"}


# ------------------------------------------------------------------- attribution in every export


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_image_or_crop_file_is_traceable_to_its_source_and_licence(curator, fmt):
    by = factories.make_source("cc-by-4.0", url="https://example.org/by", attribution="Photos by Ann")
    mit = factories.make_source("mit", url="https://example.org/mit", attribution="Scans (c) Bob")
    spec = _spec_with(by, mit, per_source=2)
    snap = factories.make_snapshot(spec=spec, name="attr", created_by=curator)
    zf, result = _export(snap, fmt)
    assert result.images == 4
    files = _image_members(zf)
    assert files, fmt
    provenance = [json.loads(line) for line in zf.read("PROVENANCE.jsonl").decode().splitlines()]
    of_file = {name: row for row in provenance for name in row["files"]}
    source_of = {im.id: im.source for im in Image.objects.filter(spec=spec).select_related("source__licence")}
    for name in files:
        row = of_file[name]  # every image or crop is listed
        src = source_of[row["image_id"]]
        assert (row["source"], row["copyright_holder"], row["licence"]) == (
            src.name, src.copyright_holder, src.licence.code), name
    assert "PROVENANCE.jsonl" in zf.read("ATTRIBUTION.md").decode()


def test_attribution_names_holder_source_licence_link_and_terms(curator):
    sa = factories.make_source("cc-by-sa-4.0", url="https://example.org/sa", attribution="Worksheets by Cara")
    spec = _spec_with(sa, intended_use=DatasetSpec.IntendedUse.RESEARCH)
    snap = factories.make_snapshot(spec=spec, name="sa", created_by=curator)
    for fmt in sorted(FORMATS):
        zf, _ = _export(snap, fmt)
        text = zf.read("ATTRIBUTION.md").decode()
        for needed in (sa.name, sa.copyright_holder, sa.url, sa.attribution, sa.licence.name,
                       "https://creativecommons.org/licenses/by-sa/4.0/"):
            assert needed in text, (fmt, needed)
        # ShareAlike: whoever adapts the images must share the adaptation under the same licence.
        assert re.search(r"share ?alike", text, re.I) and "same licence" in text, fmt


def test_crops_say_they_are_adapted_from_the_images(curator):
    by = factories.make_source("cc-by-4.0", attribution="Photos by Ann")
    snap = factories.make_snapshot(spec=_spec_with(by), name="crops", created_by=curator)
    zf, result = _export(snap, "im2latex")
    assert result.regions == 1
    text = zf.read("ATTRIBUTION.md").decode()
    # CC BY 4.0 section 3(a)(1)(B): indicate that the material was modified.
    assert "modified" in text.lower() and "crop" in text.lower()
    zf, _ = _export(snap, "coco")  # whole images, unmodified: no such notice
    assert "modified" not in zf.read("ATTRIBUTION.md").decode().lower()


# ------------------------------------------------------------------------- the admin's back doors


def test_admin_cannot_move_a_commercial_specs_image_to_a_non_commercial_source(client, curator, source, nc_source):
    spec = factories.make_spec(intended_use=DatasetSpec.IntendedUse.COMMERCIAL)
    image = factories.make_image(spec=spec, source=source)
    client.force_login(curator)

    def change(source_id: int, session: str):
        return client.post(f"/admin/curation/image/{image.pk}/change/", {
            "spec": spec.pk, "source": source_id, "categories": [c.pk for c in image.categories.all()],
            "original_filename": image.original_filename, "capture_session": session, "truth_latex": "",
            "meta": "{}"})

    r = change(nc_source.pk, "")
    assert r.status_code == 200 and "forbids commercial use" in r.content.decode()
    image.refresh_from_db()
    assert image.source_id == source.pk  # ingest's licence check cannot be side-stepped by an edit
    assert change(source.pk, "s1").status_code == 302  # other edits still save
    image.refresh_from_db()
    assert (image.source_id, image.capture_session) == (source.pk, "s1")
