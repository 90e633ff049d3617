"""Audit of the JSONL export: a region keeps every category its annotator gave it."""
from __future__ import annotations

import io
import json
import zipfile

import pytest

from common import roles
from curation import snapshots
from labeling.services import annotation_create, review_create, task_claim_next
from tests import factories
from tests.factories import quad

pytestmark = pytest.mark.django_db


def test_jsonl_region_lists_all_its_categories(curator):
    # A handwritten formula marked with a highlighter is both: the export kept only the
    # alphabetically first ("handwritten"), so the highlighter label was lost to the model team.
    spec = factories.make_spec()
    vendor = factories.make_vendor()
    factories.make_batch(spec, vendor, images=1)
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    task = task_claim_next(annotator=annotator).task
    annotation = annotation_create(task=task, annotator=annotator, submit=True, regions=[
        quad(latex="x", categories=["highlighter", "handwritten"]), quad(y0=50, y1=80, latex="y")])
    review_create(annotation=annotation, reviewer=reviewer, decision="accept")
    snap = factories.make_snapshot(spec=spec, name="multi", created_by=curator)

    buf = io.BytesIO()
    snapshots.export_build(snapshot=snap, format="jsonl", dest=buf)
    line = json.loads(zipfile.ZipFile(buf).read("annotations.jsonl").decode().splitlines()[0])
    first, second = line["regions"]
    assert first["category"] == "handwritten"  # the single-label formats' choice, unchanged
    assert first["categories"] == ["handwritten", "highlighter"]
    assert second["category"] == "formula" and second["categories"] == []
    assert list(first) == list(second)  # the same keys on every region
