"""manage.py import_inkml: CROHME inks rendered to handwritten images with their truth LaTeX."""
from __future__ import annotations

import io
import tarfile
import zipfile
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from PIL import Image as PILImage

from curation.models import Image, Source
from tests.conftest import stored_files

pytestmark = pytest.mark.django_db

GOOD_INT = """<ink xmlns="http://www.w3.org/2003/InkML">
<annotation type="writer">UN_7</annotation><annotation type="truth">$\\frac{1}{2}$</annotation>
<annotation type="UI">CROHME_2016_em_1</annotation>
<trace id="0">10 10, 10 60</trace><trace id="1">0 70, 40 70</trace><trace id="2">5 80, 25 80, 25 120, 5 120</trace>
</ink>"""
GOOD_FLOAT = """<ink xmlns="http://www.w3.org/2003/InkML">
<annotation type="truth">x^2</annotation>
<trace>1.5 2.5 100, 3.25 8.0 110, 6.0 2.5 120</trace><trace>7.0 1.0 130, 8.5 0.5 140</trace></ink>"""
NO_TRUTH = """<ink xmlns="http://www.w3.org/2003/InkML"><trace>0 0, 10 10</trace><trace>0 10, 10 0</trace></ink>"""
MALFORMED = """<ink xmlns="http://www.w3.org/2003/InkML"><trace>0 0, 10 10</trace"""
BAD_POINTS = """<ink><annotation type="truth">y</annotation><trace>0 0, ten 10</trace></ink>"""

FILES = {"HAMEX/good_int.inkml": GOOD_INT, "HAMEX/good_float.inkml": GOOD_FLOAT, "MfrDB/no_truth.inkml": NO_TRUTH,
         "MfrDB/malformed.inkml": MALFORMED, "MfrDB/bad_points.inkml": BAD_POINTS}


def write_folder(root):
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "README.txt").write_text("not ink")  # ignored: not .inkml
    return root


def run(*args):
    out = StringIO()
    call_command("import_inkml", *map(str, args), stdout=out)
    return out.getvalue()


def test_folder_import_stores_truth_and_lists_failures_and_warnings(tmp_path, research_spec):
    out = run(write_folder(tmp_path / "inks"), "--spec", research_spec.slug, "--height", 96)
    assert "3 imported, 0 duplicates skipped, 2 failed, 1 warnings" in out
    assert "MfrDB/malformed.inkml: malformed XML" in out
    assert "MfrDB/bad_points.inkml: trace" in out and "not numeric" in out
    assert "MfrDB/no_truth.inkml: no truth annotation" in out
    assert "inks/s" in out

    images = {im.meta["inkml"]: im for im in Image.objects.filter(spec=research_spec)}
    assert set(images) == {"HAMEX/good_int.inkml", "HAMEX/good_float.inkml", "MfrDB/no_truth.inkml"}
    good = images["HAMEX/good_int.inkml"]
    assert good.truth_latex == "\\frac{1}{2}" and good.meta["ui"] == "CROHME_2016_em_1"
    assert good.capture_session == "HAMEX/UN_7" and good.meta["writer"] == "UN_7"
    assert images["HAMEX/good_float.inkml"].truth_latex == "x^2"
    assert images["MfrDB/no_truth.inkml"].truth_latex == ""
    assert images["HAMEX/good_float.inkml"].capture_session == ""  # no writer named: no session invented
    for im in images.values():
        assert im.height == 96 and im.format == "PNG" and im.original_filename.endswith(".png")
        assert [c.slug for c in im.categories.all()] == ["handwritten"]
    source = Source.objects.get(name="CROHME 2016")
    assert source.licence.code == "cc-by-nc-sa-3.0" and source.kind == "public_dataset"
    assert source.copyright_holder and "CC BY-NC-SA" in source.attribution and source.url
    assert len(stored_files()) == 6  # three images + three thumbnails


@pytest.mark.parametrize("kind", ["tar.xz", "tgz", "zip"])
def test_archives_are_read_in_place(tmp_path, research_spec, kind):
    path = tmp_path / f"inks.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            for name, text in FILES.items():
                zf.writestr(f"Train/{name}", text)
    else:
        with tarfile.open(path, "w:xz" if kind == "tar.xz" else "w:gz") as tf:
            for name, text in FILES.items():
                data = text.encode()
                info = tarfile.TarInfo(f"Train/{name}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    out = run(path, "--spec", research_spec.slug)
    assert "3 imported" in out and "2 failed" in out
    assert not (tmp_path / "Train").exists()  # nothing extracted
    assert Image.objects.filter(spec=research_spec, truth_latex="x^2").count() == 1


def test_rerun_reuses_the_source_and_reports_duplicates(tmp_path, research_spec):
    folder = write_folder(tmp_path / "inks")
    run(folder, "--spec", research_spec.slug)
    out = run(folder, "--spec", research_spec.slug)
    assert "0 imported, 3 duplicates skipped" in out
    assert Source.objects.filter(name="CROHME 2016").count() == 1
    assert Image.objects.count() == 3


def test_limit_and_explicit_source(tmp_path, research_spec, source):
    out = run(write_folder(tmp_path / "inks"), "--spec", research_spec.slug, "--source", source.id, "--limit", 2)
    assert "2 imported" in out
    assert set(Image.objects.values_list("source_id", flat=True)) == {source.id}
    assert not Source.objects.filter(name="CROHME 2016").exists()


def test_commercial_spec_is_refused_with_the_licence_reason(tmp_path, spec):
    with pytest.raises(CommandError, match="forbids commercial use"):
        run(write_folder(tmp_path / "inks"), "--spec", spec.slug)
    assert Image.objects.count() == 0 and stored_files() == []


def test_unknown_spec_and_missing_path_are_command_errors(tmp_path, research_spec):
    with pytest.raises(CommandError, match="--spec"):
        run(write_folder(tmp_path / "inks"), "--spec", "nope")
    with pytest.raises(CommandError, match="does not exist"):
        run(tmp_path / "missing", "--spec", research_spec.slug)


def test_real_crohme_2016_inks_import_with_truth(shared_data, research_spec):
    out = run(shared_data / "crohme" / "test-2016.tar.xz", "--spec", research_spec.slug, "--limit", 20)
    assert "20 imported" in out and "0 failed" in out
    images = list(Image.objects.filter(spec=research_spec))
    assert len(images) == 20
    for im in images:
        assert im.truth_latex and not im.truth_latex.startswith("$")
        assert im.height == 128 and im.width >= 17
        assert im.meta["inkml"].startswith("TEST2016_INKML_GT/") and im.meta["ui"]
        assert im.capture_session.startswith("TEST2016_INKML_GT/")
    with open(stored_files_path(images[0].file), "rb") as fh:
        page = PILImage.open(fh)
        page.load()
    assert page.mode == "L" and page.size == (images[0].width, 128)


def stored_files_path(name: str) -> str:
    from django.core.files.storage import default_storage

    return default_storage.path(name)
