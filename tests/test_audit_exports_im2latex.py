"""Audit of the im2latex export: formulas.lst line N must be the formula of the crop listed with N."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from curation.exporters import ExportImage, ExportRegion, export
from curation.exporters.im2latex import formula_line
from curation.reader import ExportDataset
from tests.datasets.helpers import IM2MARKUP, MIT, png_bytes

QUAD = [[4, 4], [40, 4], [40, 20], [4, 20]]


def _image(image_id: int, latexes: list[str]) -> ExportImage:
    data = png_bytes(64, 32)
    return ExportImage(image_id=image_id, file_name=f"{image_id}.png", width=64, height=32, split="train",
                       licence=MIT, source=IM2MARKUP, open_bytes=lambda: data,
                       regions=[ExportRegion(points=np.array(QUAD, float), latex=t) for t in latexes])


def _pairs(images, **options) -> tuple[zipfile.ZipFile, dict[str, str]]:
    buf = io.BytesIO()
    export(iter(images), buf, format="im2latex", **options)
    zf = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    formulas = zf.read("formulas.lst").decode("utf-8").split("\n")
    pairs = {}
    for line in zf.read("train.lst").decode().splitlines():
        crop, idx = line.split()
        pairs[crop] = formulas[int(idx)]
    return zf, pairs


@pytest.mark.parametrize("normalize_latex", [True, False])
def test_a_backslash_before_a_line_break_does_not_shift_later_formulas(normalize_latex, tmp_path):
    # An annotator's LaTeX such as "x \<newline> + 1" passes the submit check (a control space);
    # its line break went into formulas.lst, so every later crop was paired with the formula
    # of the crop before it.
    images = [_image(1, ["x \\\n+ 1", "a\\\tb"]), _image(2, [r"\frac{1}{2}"])]
    zf, pairs = _pairs(images, normalize_latex=normalize_latex)
    formulas = zf.read("formulas.lst").decode("utf-8")
    assert len(formulas.splitlines()) == 3 and "\t" not in formulas
    if normalize_latex:
        assert pairs == {"1_0.png": "x + 1", "1_1.png": "a b", "2_0.png": r"\frac { 1 } { 2 }"}
    else:
        assert pairs["2_0.png"] == r"\frac{1}{2}"
    # The platform's own reader pairs them the same way.
    path = tmp_path / "im2latex.zip"
    path.write_bytes(zf.fp.getvalue())
    crops = ExportDataset(path, mode="crops", split="train")
    assert len(crops) == 3 and crops[2][1] == pairs["2_0.png"]


def test_a_region_whose_latex_is_only_spacing_gets_no_crop_and_no_empty_formula():
    zf, pairs = _pairs([_image(1, [r"\, \quad", "y"])])
    assert pairs == {"1_1.png": "y"}
    assert "images/1_0.png" not in zf.namelist()
    assert "" not in zf.read("formulas.lst").decode().splitlines()


def test_formula_line_keeps_ordinary_tokens():
    assert formula_line(r"x^2 \leq \alpha") == r"x ^ { 2 } \leq \alpha"
    assert formula_line("a \\\r\nb") == "a b"


def test_images_that_give_no_crop_are_not_counted_or_credited():
    """They were counted in `images`, LICENSES.json and ATTRIBUTION.md with nothing of them in the zip."""
    import io as _io
    import json as _json
    import zipfile as _zipfile

    import numpy as _np

    from curation.exporters import ExportRegion, export
    from tests.datasets.helpers import CROHME, make_image

    rng = _np.random.default_rng(3)
    with_crop = make_image(1, rng=rng, n_quads=1, n_masks=0)
    without = make_image(2, rng=rng, n_quads=1, n_masks=0, source=CROHME)
    without.regions = [ExportRegion(points=without.regions[0].points, latex="   ", category="formula")]
    buf = _io.BytesIO()
    result = export(iter([with_crop, without]), buf, format="im2latex")
    zf = _zipfile.ZipFile(buf)
    assert result.images == 1 and result.regions == 1
    licences = _json.loads(zf.read("LICENSES.json"))
    assert licences["images"] == 1 and sum(row["images"] for row in licences["licences"]) == 1
    provenance = [_json.loads(line) for line in zf.read("PROVENANCE.jsonl").splitlines()]
    assert [row["image_id"] for row in provenance] == [1]
    assert CROHME.name not in zf.read("ATTRIBUTION.md").decode()
