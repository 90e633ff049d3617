"""import_images --tsv says which TSV lines lost their file or clash: a name spelled in another
case, or two folders' files sharing a base name, used to lose or swap LaTeX without a word."""
from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from curation.importers import read_tsv
from curation.models import Image
from tests.curation.test_import_images import page_png

pytestmark = pytest.mark.django_db


def test_tsv_lines_that_match_no_file_are_reported_with_a_near_name(tmp_path, spec):
    folder = tmp_path / "pages"
    folder.mkdir()
    (folder / "A.PNG").write_bytes(page_png((50, 100, 149, 119)))
    (folder / "b.png").write_bytes(page_png((10, 300, 389, 349)))
    tsv = tmp_path / "pages.tsv"
    tsv.write_text("a.png\tx\nb.png\ty\nmissing.png\tz\n")
    out, err = StringIO(), StringIO()
    call_command("import_images", str(folder), "--spec", spec.slug, "--tsv", str(tsv), stdout=out, stderr=err)
    assert "2 line(s) of" in err.getvalue()
    assert "a.png (a file is named A.PNG)" in err.getvalue() and "missing.png" in err.getvalue()
    assert Image.objects.get(original_filename="b.png").truth_latex == "y"


def test_two_lines_for_one_base_name_with_other_latex_are_reported(tmp_path):
    tsv = tmp_path / "pages.tsv"
    tsv.write_text("train/1.png\ta\ntest/1.png\tb\ntrain/2.png\tc\nagain/2.png\tc\n")
    clashes: list[str] = []
    truths = read_tsv(tsv, clashes=clashes)
    assert truths == {"1.png": "b", "2.png": "c"}
    assert clashes == ["1.png: lines 1 and 2 give different LaTeX (files are matched by base name); line 2 is used"]
