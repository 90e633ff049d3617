"""The Label Studio and CVAT imports at scale, and LaTeX only XML can carry.

- The images already in the spec (and the predictions an annotation started from) are looked up a
  chunk of hashes at a time: one ``IN`` list over every image of a big import passes SQLite's bound
  variable limit (32,766; 999 before 3.32) or psycopg 3's (65,535), a traceback after every file
  was read and decoded.
- A missing file's near miss ("the folder has a.png (names must match in case)") comes from a
  case-folded index built once per import, not from a pass over every name of the folder for every
  missing file.
- The one LaTeX check every input passes (``labeling.services._latex_checked``) refuses Unicode
  non-characters (U+FDD0..U+FDEF, U+xFFFE and U+xFFFF in every plane), besides the control characters
  XML 1.0 cannot hold, so nothing is accepted that the CVAT export must later refuse.
"""
from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext

from common import roles
from curation import labelstudio_import as ls
from curation import services
from curation.models import Image
from labeling import services as labeling
from labeling.models import Prediction
from tests import factories

pytestmark = pytest.mark.django_db

W, H = 60, 40


def _folder(tmp_path: Path, n: int) -> tuple[Path, list[str]]:
    folder = tmp_path / "images"
    folder.mkdir()
    names = [f"f{i}.png" for i in range(n)]
    for i, name in enumerate(names):
        (folder / name).write_bytes(factories.png_bytes(W, H, seed=3300 + i))
    return folder, names


def _rectangle(latex: str = "x") -> list[dict]:
    common = {"from_name": "label", "to_name": "image", "original_width": W, "original_height": H, "id": "r"}
    return [{**common, "type": "rectanglelabels",
             "value": {"x": 10, "y": 10, "width": 50, "height": 50, "rotation": 0, "rectanglelabels": ["printed"]}},
            {**common, "from_name": "latex", "type": "textarea", "value": {"text": [latex]}}]


def _ls_import(spec, source, folder: Path, names: list[str], *, latex: str = "x", **kw):
    tasks = [{"id": i, "data": {"image": name}, "annotations": [{"id": 1, "result": _rectangle(latex)}]}
             for i, name in enumerate(names)]
    return services.labelstudio_import(spec=spec, source=source, tasks=tasks, images_dir=folder,
                                       model_version="v", **kw)


def _cvat_import(spec, source, folder: Path, names: list[str], **kw):
    frames = "".join(
        f'<image id="{i}" name={quoteattr(name)} width="{W}" height="{H}"><box label="printed" xtl="6" ytl="4" '
        f'xbr="36" ybr="24" occluded="0"><attribute name="latex">x</attribute></box></image>'
        for i, name in enumerate(names))
    xml = folder.parent / "annotations.xml"
    xml.write_text(f'<?xml version="1.0" encoding="utf-8"?><annotations><version>1.1</version>{frames}'
                   "</annotations>", encoding="utf-8")
    return services.cvat_import(spec=spec, source=source, annotations=xml, images_dir=folder, model_version="v", **kw)


IMPORTS = {"label-studio": (_ls_import, lambda report: report.tasks),
           "cvat": (_cvat_import, lambda report: report.images)}


def _count(queries, *needles: str) -> int:
    return sum(1 for q in queries if all(n in q["sql"] for n in needles))


# --- lookups a chunk at a time --------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(IMPORTS))
def test_the_images_already_in_the_spec_are_looked_up_a_chunk_of_hashes_at_a_time(
        tmp_path, spec, source, monkeypatch, kind):
    do_import, plans_of = IMPORTS[kind]
    folder, names = _folder(tmp_path, 5)
    there = {name: factories.make_image(spec=spec, source=source, data=(folder / name).read_bytes(), filename=name)
             for name in names[::2]}                        # f0, f2, f4: three of five
    monkeypatch.setattr(services, "IMPORT_LOOKUP_CHUNK", 2, raising=False)

    with CaptureQueriesContext(connection) as ctx:
        report = do_import(spec, source, folder, names, dry_run=True)
    assert not report.all_problems()
    got = {plan.file: plan.image for plan in plans_of(report)}
    assert got == {name: f"duplicate of image {there[name].pk}" if name in there else "new" for name in names}
    # Five hashes, two a query: three queries; three images already there: two queries for their predictions.
    assert _count(ctx.captured_queries, '"sha256" IN (') == 3
    assert _count(ctx.captured_queries, '"labeling_prediction"', '"image_id" IN (') == 2

    report = do_import(spec, source, folder, names)
    assert (report.images_new, report.images_duplicate, len(report.created)) == (2, 3, 2)
    assert Image.objects.filter(spec=spec).count() == 5
    assert Prediction.objects.filter(image__spec=spec, model_version="v").count() == 5


def test_a_prediction_an_annotation_started_from_is_found_in_whichever_chunk_holds_it(
        tmp_path, spec, source, monkeypatch):
    folder, names = _folder(tmp_path, 3)
    _ls_import(spec, source, folder, names)
    vendor = factories.make_vendor()
    labeling.batch_create(spec=spec, vendor=vendor, name="b", unit_price=Decimal("0.1"), quantity=3, overlap=1,
                          kind="full")
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    claim = labeling.task_claim_next(annotator=annotator)
    started = Prediction.objects.get(image=claim.task.image)
    regions = [{k: v for k, v in r.items() if k != "latex_normalized"} for r in started.regions]
    labeling.annotation_create(task=claim.task, annotator=annotator, regions=regions, started_from=started)

    monkeypatch.setattr(services, "IMPORT_LOOKUP_CHUNK", 1, raising=False)
    with CaptureQueriesContext(connection) as ctx:
        report = _ls_import(spec, source, folder, names, latex="y", dry_run=True)
    assert _count(ctx.captured_queries, '"sha256" IN (') == 3
    assert _count(ctx.captured_queries, '"labeling_prediction"', '"image_id" IN (') == 3
    assert [plan.kept for plan in report.tasks] == [plan.file == started.image.original_filename
                                                    for plan in report.tasks]
    report = _ls_import(spec, source, folder, names, latex="y")
    assert (report.predictions, report.kept) == (2, 1)


@pytest.fixture
def stock_sqlite_limit():
    """SQLite as most builds have it (32,766 bound variables; Debian's allows 250,000)."""
    if connection.vendor != "sqlite":
        yield
        return
    import sqlite3

    connection.ensure_connection()
    raw = connection.connection
    was = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32_766)
    yield
    raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, was)


def test_seventy_thousand_hashes_are_looked_up_without_passing_the_databases_limit(spec, source, stock_sqlite_limit):
    """More than SQLite's stock limit (32,766 variables) and psycopg 3's with server-side binding (65,535
    parameters); no image files."""
    images = [factories.make_image(spec=spec, source=source) for _ in range(2)]
    other = factories.make_image(source=source)              # an image of another spec is not taken
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(70_000)]
    hashes[12_345], hashes[69_999] = images[0].sha256, images[1].sha256
    hashes[40_000] = other.sha256
    if connection.vendor == "sqlite":                       # what one query over them all does
        with pytest.raises(OperationalError, match="too many SQL variables"), transaction.atomic():
            list(Image.objects.filter(spec=spec, sha256__in=hashes))
    found = services._images_by_sha256(spec=spec, hashes=hashes)
    assert found == {im.sha256: im for im in images}


# --- the near miss: one case-folded index per import ----------------------------------------

class _Name(str):
    """An index key that counts how often it is case-folded."""

    folds = 0

    def casefold(self):
        _Name.folds += 1
        return str(self).casefold()

    def lower(self):
        _Name.folds += 1
        return str(self).lower()


@pytest.mark.parametrize("kind", sorted(IMPORTS))
def test_the_near_miss_of_many_missing_files_folds_the_folder_once(tmp_path, spec, source, monkeypatch, kind):
    do_import, plans_of = IMPORTS[kind]
    folder, names = _folder(tmp_path, 12)
    real = ls.index_images

    def counting(path):
        index = real(path)
        return type(index)((_Name(k), v) for k, v in index.items())

    monkeypatch.setattr(ls, "index_images", counting)
    monkeypatch.setattr(_Name, "folds", 0)
    asked = ["F0.PNG", "F1.PNG", "F2.PNG", *(f"missing{i}.png" for i in range(7))]
    report = do_import(spec, source, folder, asked, dry_run=True)
    messages = [m for plan in plans_of(report) for _, m in plan.problems]
    assert len(messages) == 10
    assert all(f"the folder has f{i}.png (names must match in case)" in messages[i] for i in range(3))
    assert not any("the folder has" in m for m in messages[3:])
    # Each of the folder's 12 names folded once, not once for each of the 10 missing files (120).
    assert _Name.folds <= 12


def test_the_near_miss_still_works_on_a_plain_index(tmp_path):
    folder, _ = _folder(tmp_path, 2)
    index = dict(ls.index_images(folder))
    with pytest.raises(ls.LabelStudioError, match=r"the folder has f1\.png \(names must match in case\)"):
        ls.find_image_file("F1.png", index, field="x")


# --- LaTeX that XML 1.0 cannot hold, refused at input ----------------------------------------

@pytest.mark.parametrize("char", ["\ufdd0", "\ufdef", "\ufffe", "\uffff", "\U0001fffe", "\U0002ffff",
                                  "\U0010fffe", "\U0010ffff"])
def test_a_unicode_non_character_in_latex_is_refused(char):
    problems, normalized = labeling._latex_checked(f"x^{{2}}{char}")
    assert normalized == ""
    assert problems == [f"The LaTeX holds U+{ord(char):04X}, a Unicode non-character (not text; XML, and so a "
                        "CVAT export, cannot hold it): remove it."]


@pytest.mark.parametrize("char", ["\x01", "\x08", "\x0b", "\x0c", "\x1f", "\x00", "\ud800"])
def test_control_and_surrogate_characters_are_still_refused(char):
    problems, _ = labeling._latex_checked(f"x{char}")
    assert problems == [f"The LaTeX holds the control or surrogate character U+{ord(char):04X}."]


@pytest.mark.parametrize("char", ["\t", "\n", "\r", "\ufdcf", "\ufdf0", "\ufffd", "\ue000", "\U0001fffd",
                                  "\U00010000", "\u00e4"])
def test_characters_next_to_the_non_characters_are_accepted(char):
    problems, normalized = labeling._latex_checked(f"x {char} y")
    assert problems == [] and normalized


def test_a_label_studio_import_refuses_latex_a_cvat_export_could_not_write(tmp_path, spec, source):
    folder, names = _folder(tmp_path, 1)
    report = _ls_import(spec, source, folder, names, latex="x\uffff", dry_run=True)
    assert report.all_problems() == [
        ("tasks[0].annotations[0].result[0].latex",
         "The LaTeX holds U+FFFF, a Unicode non-character (not text; XML, and so a CVAT export, cannot hold it): "
         "remove it.")]
