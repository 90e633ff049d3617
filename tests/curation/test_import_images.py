"""manage.py import_images / ingest_images: pages with LaTeX and ink box, any folder or zip."""
from __future__ import annotations

import io
import zipfile
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from PIL import Image as PILImage
from PIL import ImageDraw

from curation.importers import read_tsv
from curation.models import Image, Source
from tests.conftest import stored_files
from tests.factories import png_bytes

pytestmark = pytest.mark.django_db


def page_png(box: tuple[int, int, int, int], size=(400, 600)) -> bytes:
    """A palette PNG with a transparent background and ink only inside `box` (like im2markup)."""
    img = PILImage.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(img).rectangle(box, fill=(0, 0, 0, 255))
    buf = io.BytesIO()
    img.convert("P", palette=PILImage.Palette.ADAPTIVE).save(buf, "PNG", transparency=0)
    return buf.getvalue()


def write_pages(root):
    root.mkdir(parents=True)
    (root / "a.png").write_bytes(page_png((50, 100, 149, 119)))
    (root / "b.png").write_bytes(page_png((10, 300, 389, 349)))
    (root / "c.png").write_bytes(page_png((20, 20, 39, 39)))
    (root / "broken.png").write_bytes(page_png((1, 1, 5, 5))[:60])  # truncated
    (root / "notes.png").write_bytes(b"this is not an image")
    (root / "list.txt").write_text("ignored")
    tsv = root.parent / "pages.tsv"
    tsv.write_text("a.png\t\\frac{a}{b}\nb.png\tx^{2}\\label{eq1}\nbroken.png\ty\n\nmalformed line\n")
    return root, tsv


def run(command, *args):
    out = StringIO()
    call_command(command, *map(str, args), stdout=out)
    return out.getvalue()


def test_pages_import_with_latex_and_ink_bbox(tmp_path, spec):
    folder, tsv = write_pages(tmp_path / "pages")
    out = run("import_images", folder, "--spec", spec.slug, "--tsv", tsv)
    assert "3 imported, 0 duplicates skipped, 2 failed, 1 warnings" in out
    assert "broken.png: broken.png: unreadable image header (Truncated File Read)" in out
    assert "notes.png: notes.png: not an image" in out
    assert "c.png: no LaTeX for this file in the TSV" in out
    images = {im.original_filename: im for im in Image.objects.filter(spec=spec)}
    assert images["a.png"].truth_latex == "\\frac{a}{b}" and images["b.png"].truth_latex == "x^{2}\\label{eq1}"
    assert images["c.png"].truth_latex == ""
    # PIL rectangle (x0, y0, x1, y1) is inclusive; the stored box is exclusive at the far end.
    assert images["a.png"].meta["ink_bbox"] == [50, 100, 150, 120]
    assert images["b.png"].meta["ink_bbox"] == [10, 300, 390, 350]
    assert all([c.slug for c in im.categories.all()] == ["printed"] for im in images.values())
    source = Source.objects.get(name="im2markup (Harvard NLP)")
    assert source.licence.code == "mit" and source.licence.allows_commercial
    assert len(stored_files()) == 6


def test_zip_of_pages_and_chosen_categories(tmp_path, spec, source):
    zpath = tmp_path / "pages.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("p/one.png", page_png((5, 5, 10, 10)))
        zf.writestr("p/two.png", page_png((5, 5, 20, 10)))
        zf.writestr("__MACOSX/p/._one.png", b"junk")
    out = run("import_images", zpath, "--spec", spec.slug, "--source", source.name,
              "--category", "printed", "--category", "shadow")
    assert "2 imported" in out and "0 failed" in out
    for im in Image.objects.all():
        assert sorted(c.slug for c in im.categories.all()) == ["printed", "shadow"]
        assert im.source_id == source.id and im.meta["path"].startswith("p/")


def test_unknown_category_refuses_the_whole_import(tmp_path, spec):
    folder, _ = write_pages(tmp_path / "pages")
    with pytest.raises(CommandError, match="Unknown category"):
        run("import_images", folder, "--spec", spec.slug, "--category", "nope")
    assert Image.objects.count() == 0 and stored_files() == []


def test_ingest_images_needs_a_source_and_stores_no_bbox(tmp_path, spec, source):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(png_bytes(fmt="JPEG"))
    with pytest.raises(CommandError, match="--source is required"):
        run("ingest_images", folder, "--spec", spec.slug)
    out = run("ingest_images", folder, "--spec", spec.slug, "--source", source.id, "--category", "shadow")
    assert "3 imported" in out
    for im in Image.objects.all():
        assert "ink_bbox" not in im.meta and im.format == "JPEG"
        assert [c.slug for c in im.categories.all()] == ["shadow"]
    again = run("ingest_images", folder, "--spec", spec.slug, "--source", source.id)
    assert "0 imported, 3 duplicates skipped" in again


def test_non_commercial_source_refused_for_commercial_spec(tmp_path, spec, nc_source):
    folder, _ = write_pages(tmp_path / "pages")
    with pytest.raises(CommandError, match="forbids commercial use"):
        run("ingest_images", folder, "--spec", spec.slug, "--source", nc_source.id)
    assert Image.objects.count() == 0


def test_read_tsv_keys_by_base_name(tmp_path):
    tsv = tmp_path / "t.tsv"
    tsv.write_text("dir/x.png\t a + b \ny.png\tc\tstill latex\nno tab here\n")
    assert read_tsv(tsv) == {"x.png": "a + b", "y.png": "c\tstill latex"}


def test_real_im2markup_pages_with_tsv_and_ink_bbox(shared_data, spec):
    pages, tsv = shared_data / "im2markup" / "pages", shared_data / "im2markup" / "train.tsv"
    out = run("import_images", pages, "--spec", spec.slug, "--tsv", tsv, "--limit", 10)
    assert "10 imported" in out and "0 failed" in out
    truths = read_tsv(tsv)
    images = list(Image.objects.filter(spec=spec))
    assert len(images) == 10
    for im in images:
        assert im.truth_latex == truths[im.original_filename] != ""
        assert (im.width, im.height) == (1654, 2339)
        x0, y0, x1, y1 = im.meta["ink_bbox"]
        assert 0 <= x0 < x1 <= im.width and 0 <= y0 < y1 <= im.height
        assert (x1 - x0) * (y1 - y0) < 0.5 * im.width * im.height  # a formula, not the page


def test_blank_page_is_imported_with_a_warning(tmp_path, spec):
    folder = tmp_path / "pages"
    folder.mkdir()
    blank = PILImage.new("RGBA", (50, 50), (0, 0, 0, 0))
    buf = io.BytesIO()
    blank.save(buf, "PNG")
    (folder / "blank.png").write_bytes(buf.getvalue())
    out = run("import_images", folder, "--spec", spec.slug)
    assert "1 imported" in out and "blank.png: blank page: no ink found" in out
    assert "ink_bbox" not in Image.objects.get().meta
