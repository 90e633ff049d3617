"""An image's truth (`Image.truth_latex`, a later gold answer) passes the character check every
annotator's, reviewer's and import's LaTeX passes (`common.latex.character_problems`, used by
`labeling.services._latex_checked`), whichever way it arrives: the ingest services, the InkML
and image/TSV import commands, the demo loader, the admin form. A truth holding NUL, a lone
surrogate, a C0 control or a Unicode non-character is refused naming the field, and nothing is
stored for it (no Image row, no file).

Only characters are checked, not the LaTeX's grammar: about 50 of the ~11,600 truths of the real
CROHME and im2markup data (../shared/data) do not parse by the annotators' rules (a ``$`` inside,
CROHME's ``\\ltN``-style typos, empty formulas), and a truth is the data set's own answer.
"""
from __future__ import annotations

from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from common import latex
from curation import demo, importers, services
from curation.admin import ImageAdminForm
from curation.models import Image
from tests import factories
from tests.conftest import stored_files
from tests.curation.test_import_images import page_png
from tests.curation.test_import_inkml import GOOD_FLOAT, GOOD_INT

pytestmark = pytest.mark.django_db

BAD = {
    "nul": "\x00",
    "surrogate": "\ud800",
    "control": "\x1b",
    "noncharacter": "\ufdd0",
    "noncharacter-ffff": "\uffff",
    "noncharacter-plane16": "\U0010ffff",
}
# What a UTF-8 text file (a TSV) can hold: a lone surrogate cannot be encoded at all.
BAD_IN_TEXT = {k: v for k, v in BAD.items() if k != "surrogate"}


def bad_truth(char: str) -> str:
    return f"x^{{2}}{char}+1"


def assert_nothing_stored():
    assert Image.objects.count() == 0
    assert stored_files() == []


# ------------------------------------------------------------------ the one check


@pytest.mark.parametrize("kind", BAD)
def test_the_character_check_refuses_each_kind(kind):
    problems = latex.character_problems(bad_truth(BAD[kind]))
    assert problems and f"U+{ord(BAD[kind]):04X}" in problems[0]


def test_the_character_check_accepts_real_looking_truths():
    for src in ["\\frac{1}{2}", "x^2\t+\n1\r\n", "\\text{넓이} = \\pi r^{2}", "a $ b", "\\ltN", "", "𝑥 ≤ 𝟙"]:
        assert latex.character_problems(src) == []


# ------------------------------------------------------------------ services


@pytest.mark.parametrize("kind", BAD)
def test_image_ingest_refuses_a_bad_truth_naming_the_field(kind, spec, source):
    with pytest.raises(ValidationError) as exc:
        services.image_ingest(spec=spec, source=source, data=factories.png_bytes(), filename="a.png",
                              truth_latex=bad_truth(BAD[kind]))
    assert "truth_latex" in exc.value.message_dict
    assert f"U+{ord(BAD[kind]):04X}" in " ".join(exc.value.message_dict["truth_latex"])
    assert_nothing_stored()


@pytest.mark.parametrize("kind", BAD)
def test_images_ingest_names_the_files_truth_and_stores_none_of_the_call(kind, spec, source):
    files = [("a.png", factories.png_bytes()), ("b.png", factories.png_bytes())]
    with pytest.raises(ValidationError) as exc:
        services.images_ingest(spec=spec, source=source, files=files, truth_latex=["y", bad_truth(BAD[kind])])
    assert set(exc.value.message_dict) == {"truth_latex[1]"}
    assert_nothing_stored()


@pytest.mark.parametrize("kind", BAD)
def test_ingest_batch_lists_the_bad_truth_and_imports_the_rest(kind, spec, source):
    items = [services.IngestItem(name="good.png", data=factories.png_bytes(), truth_latex="y"),
             services.IngestItem(name="bad.png", data=factories.png_bytes(), truth_latex=bad_truth(BAD[kind]))]
    report = services.ingest_batch(spec=spec, source=source, items=items)
    assert report.imported == 1
    assert [f.file for f in report.failures] == ["bad.png"]
    assert "truth_latex" in report.failures[0].error and f"U+{ord(BAD[kind]):04X}" in report.failures[0].error
    assert list(Image.objects.values_list("original_filename", "truth_latex")) == [("good.png", "y")]
    assert len(stored_files()) == 2  # the good image and its thumbnail only


# ------------------------------------------------------------------ import_inkml


def run_inkml(*args):
    out = StringIO()
    call_command("import_inkml", *map(str, args), stdout=out)
    return out.getvalue()


def test_import_inkml_refuses_a_non_character_in_a_real_files_truth(tmp_path, research_spec):
    folder = tmp_path / "inks"
    folder.mkdir()
    (folder / "good.inkml").write_text(GOOD_FLOAT)
    # XML 1.0 holds U+FDD0 and U+10FFFF (not U+FFFE/U+FFFF, NUL or C0 controls: those fail to parse).
    (folder / "bad.inkml").write_text(GOOD_INT.replace("\\frac{1}{2}", "\\frac{1}{2}\ufdd0"), encoding="utf-8")
    (folder / "ref.inkml").write_text(GOOD_INT.replace("\\frac{1}{2}", "x&#x10FFFF;"), encoding="utf-8")
    out = run_inkml(folder, "--spec", research_spec.slug)
    assert "1 imported, 0 duplicates skipped, 2 failed" in out
    assert "bad.inkml: truth_latex: " in out and "U+FDD0" in out
    assert "ref.inkml: truth_latex: " in out and "U+10FFFF" in out
    assert list(Image.objects.values_list("truth_latex", flat=True)) == ["x^2"]
    assert len(stored_files()) == 2


@pytest.mark.parametrize("kind", BAD)
def test_import_inkml_refuses_each_kind_of_bad_truth(kind, tmp_path, research_spec, monkeypatch):
    # An XML parser refuses most of these characters itself; the truth is checked whatever parsed it.
    real_parse = importers.parse_inkml

    def parse(data, name):
        ink = real_parse(data, name=name)
        ink.truth = bad_truth(BAD[kind])
        return ink

    monkeypatch.setattr(importers, "parse_inkml", parse)
    folder = tmp_path / "inks"
    folder.mkdir()
    (folder / "a.inkml").write_text(GOOD_INT)
    out = run_inkml(folder, "--spec", research_spec.slug)
    assert "0 imported, 0 duplicates skipped, 1 failed" in out
    assert "a.inkml: truth_latex: " in out and f"U+{ord(BAD[kind]):04X}" in out
    assert_nothing_stored()


# ------------------------------------------------------------------ import_images / ingest_images --tsv


def write_pages(tmp_path, char: str):
    folder = tmp_path / "pages"
    folder.mkdir()
    (folder / "a.png").write_bytes(page_png((50, 100, 149, 119)))
    (folder / "b.png").write_bytes(page_png((10, 300, 389, 349)))
    tsv = tmp_path / "pages.tsv"
    tsv.write_text(f"a.png\tx\nb.png\t{bad_truth(char)}\n", encoding="utf-8")
    return folder, tsv


@pytest.mark.parametrize("command", ["import_images", "ingest_images"])
@pytest.mark.parametrize("kind", BAD_IN_TEXT)
def test_image_commands_refuse_a_tsv_line_with_a_bad_truth(kind, command, tmp_path, spec, source):
    folder, tsv = write_pages(tmp_path, BAD[kind])
    with pytest.raises(CommandError) as exc:
        call_command(command, str(folder), "--spec", spec.slug, "--source", str(source.id), "--tsv", str(tsv),
                     stdout=StringIO(), stderr=StringIO())
    message = str(exc.value)
    assert "--tsv" in message and "line 2" in message and "b.png" in message and "truth_latex" in message
    assert f"U+{ord(BAD[kind]):04X}" in message
    assert_nothing_stored()


def test_a_tsv_with_a_lone_surrogate_cannot_be_read_and_nothing_is_stored(tmp_path, spec, source):
    folder, tsv = write_pages(tmp_path, "")
    tsv.write_bytes(b"a.png\tx\nb.png\tx\xed\xa0\x80\n")  # U+D800 as (invalid) UTF-8
    with pytest.raises(CommandError, match="--tsv: cannot read"):
        call_command("import_images", str(folder), "--spec", spec.slug, "--source", str(source.id),
                     "--tsv", str(tsv), stdout=StringIO(), stderr=StringIO())
    assert_nothing_stored()


@pytest.mark.parametrize("kind", BAD_IN_TEXT)
def test_read_tsv_names_the_line_and_file(kind, tmp_path):
    _, tsv = write_pages(tmp_path, BAD[kind])
    with pytest.raises(ValueError, match=r"line 2.*b\.png.*truth_latex"):
        importers.read_tsv(tsv)


# ------------------------------------------------------------------ the demo loader


@pytest.mark.parametrize("kind", BAD)
def test_demo_ingest_lists_a_bad_truth_and_stores_nothing_for_it(kind, research_spec, source):
    summary = demo.DemoSummary()
    items = [services.IngestItem(name="demo-x.png", data=factories.png_bytes(), truth_latex=bad_truth(BAD[kind]))]
    demo._ingest(summary, spec=research_spec, source=source, items=items, categories=["printed"], user=None)
    assert summary.imported == 0
    assert len(summary.failures) == 1 and summary.failures[0].startswith("demo-x.png: truth_latex: ")
    assert_nothing_stored()


# ------------------------------------------------------------------ the admin


def admin_data(image, truth: str) -> dict:
    return {"spec": image.spec_id, "source": image.source_id, "categories": [c.pk for c in image.categories.all()],
            "original_filename": image.original_filename, "capture_session": "", "truth_latex": truth, "meta": "{}"}


@pytest.mark.parametrize("kind", BAD)
def test_admin_form_refuses_a_bad_truth(kind, spec, source):
    image = factories.make_image(spec=spec, source=source, truth_latex="x")
    form = ImageAdminForm(data=admin_data(image, bad_truth(BAD[kind])), instance=image)
    assert not form.is_valid()
    assert "truth_latex" in form.errors
    image.refresh_from_db()
    assert image.truth_latex == "x"


def test_admin_change_page_refuses_a_non_character_and_keeps_the_truth(client, curator, spec, source):
    image = factories.make_image(spec=spec, source=source, truth_latex="x")
    client.force_login(curator)
    r = client.post(f"/admin/curation/image/{image.pk}/change/", admin_data(image, bad_truth("\ufdd0")))
    assert r.status_code == 200 and "U+FDD0" in r.content.decode()
    image.refresh_from_db()
    assert image.truth_latex == "x"
    # A good truth still saves.
    assert client.post(f"/admin/curation/image/{image.pk}/change/", admin_data(image, "x^{2}")).status_code == 302
    image.refresh_from_db()
    assert image.truth_latex == "x^{2}"


# ------------------------------------------------------------------ the API


def test_the_upload_api_takes_no_truth(curator_api, spec, source):
    """The API is no write path of a truth: `truth_latex` is read-only (curators see it), so one
    sent with an upload, bad characters or not, is not stored."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    r = curator_api.post("/api/v1/images/", {"spec": spec.id, "source": source.id, "categories": ["printed"],
                                             "file": SimpleUploadedFile("a.png", factories.png_bytes()),
                                             "truth_latex": bad_truth("\ufdd0")}, format="multipart")
    assert r.status_code == 201, r.content
    assert Image.objects.get().truth_latex == ""
