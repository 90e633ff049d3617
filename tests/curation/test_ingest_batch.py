"""services.ingest_batch (and ingest_stream / import jobs built on it): chunks, one bad file, limits."""
from __future__ import annotations

import io
import zipfile

import pytest

from curation import services
from curation.models import Image, ImportJob
from curation.services import IngestItem, ingest_batch
from tests.conftest import stored_files
from tests.factories import png_bytes

pytestmark = pytest.mark.django_db


def items(n: int, bad_at: set[int] = frozenset()) -> list[IngestItem]:
    return [IngestItem(name=f"f{i}.png", data=b"not an image" if i in bad_at else png_bytes(),
                       truth_latex=f"x_{i}", meta={"i": i}, capture_session=f"s{i % 2}") for i in range(n)]


def test_one_bad_file_in_a_chunk_fails_alone(spec, source):
    report = ingest_batch(spec=spec, source=source, items=items(7, bad_at={3}), categories=["printed"], chunk_size=5)
    assert (report.imported, report.duplicates) == (6, 0)
    assert [f.file for f in report.failures] == ["f3.png"] and "not an image" in report.failures[0].error
    stored = {im.original_filename: im for im in Image.objects.all()}
    assert set(stored) == {f"f{i}.png" for i in range(7) if i != 3}
    assert stored["f4.png"].truth_latex == "x_4" and stored["f4.png"].meta == {"i": 4}
    assert stored["f5.png"].capture_session == "s1" and stored["f6.png"].capture_session == "s0"
    assert len(stored_files()) == 12


def test_items_marked_with_an_error_are_listed_and_warnings_kept(spec, source):
    batch = items(2)
    batch.append(IngestItem(name="x.png", data=None, error="cannot read", label="x.inkml"))
    batch[0].warning = "no truth"
    report = ingest_batch(spec=spec, source=source, items=batch)
    assert report.imported == 2
    assert [(f.file, f.error) for f in report.failures] == [("x.inkml", "cannot read")]
    assert [(w.file, w.error) for w in report.warnings] == [("f0.png", "no truth")]


def test_limit_counts_taken_files_and_duplicates_are_reported(spec, source):
    batch = items(6)
    assert ingest_batch(spec=spec, source=source, items=batch, limit=4, chunk_size=3).imported == 4
    again = ingest_batch(spec=spec, source=source, items=batch, chunk_size=4)
    assert (again.imported, again.duplicates) == (2, 4)
    assert Image.objects.count() == 6


def test_licence_refusal_happens_before_anything_is_read(spec, nc_source):
    def never():
        raise AssertionError("items must not be read")
        yield

    with pytest.raises(services.ValidationError, match="forbids commercial use"):
        ingest_batch(spec=spec, source=nc_source, items=never())


def test_import_job_lists_the_bad_member_and_stores_the_rest(spec, source, curator,
                                                             django_capture_on_commit_callbacks):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.png", png_bytes())
        zf.writestr("b.png", b"garbage")
        zf.writestr("c.png", png_bytes())
    with django_capture_on_commit_callbacks(execute=True):  # the task is enqueued after commit
        job = services.import_job_create(spec=spec, source=source, archive=buf.getvalue(), filename="x.zip",
                                         categories=["printed"], created_by=curator)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE
    assert (job.imported, job.duplicates) == (2, 0)
    assert [e["file"] for e in job.errors] == ["b.png"]
