"""pdflatex typesetting of printed training and validation formulas (pipeline.ml.typeset)."""
from __future__ import annotations

import gzip
import pickle

import cv2
import numpy as np
import pytest

from common.latex import normalize_tokens
from pipeline.ml import data, synth, train_recognizer, typeset
from pipeline.ml.imageio import crop_to_ink
from pipeline.ml.train_recognizer import cached_printed_pool, printed_pool

needs_pdflatex = pytest.mark.skipif(not typeset.available(), reason="pdflatex is not installed (Debian: "
                                    "texlive-latex-base texlive-fonts-recommended; .ci/run installs them)")


def test_latex_source_spells_tokens_as_pdflatex_reads_them():
    toks = " ".join(normalize_tokens(r"\begin{array}{cc} a & b \\[6pt] c & d \end{array} , f''"))
    assert "\\begin { a r r a y }" in toks  # what the normaliser writes
    src = typeset.latex_source(toks)
    assert "\\begin{array}" in src and "\\end{array}" in src
    assert "\\\\[6pt]" in src
    assert src.endswith("f ''")
    assert "\n" not in typeset.latex_source("a\n+\nb")  # one line: an error's line number names its formula


@needs_pdflatex
def test_a_typeset_truth_looks_like_its_im2markup_page(shared_data):
    """The renderer reproduces the real pdflatex pages: the same size within a pixel, the same ink."""
    rows = data.im2markup_rows(shared_data, heldout=False)[:12]
    pages = [synth.im2markup_crop(shared_data / "im2markup" / "pages" / name) for name, _ in rows]
    crops = typeset.render_many([src for _, src in rows])
    assert all(crop is not None for crop in crops)
    for page, crop in zip(pages, crops, strict=True):
        assert abs(page.shape[0] - crop.shape[0]) <= 1 and abs(page.shape[1] - crop.shape[1]) <= 1
        h, w = min(page.shape[0], crop.shape[0]), min(page.shape[1], crop.shape[1])
        a, b = (cv2.GaussianBlur(255 - x[:h, :w].astype(np.float32), (0, 0), 2).ravel() for x in (page, crop))
        assert np.corrcoef(a, b)[0, 1] > 0.9


@needs_pdflatex
def test_formulas_pdflatex_cannot_typeset_are_left_out_and_the_others_kept():
    sources = ["x ^ { 2 }", r"\frac { a } {", r"\nosuchmacro y", r"\def\x{\x}\x", "a + b"]
    crops = typeset.render_many(sources, chunk=8)
    assert [c is None for c in crops] == [False, True, True, True, False]
    x2, ab = crops[0], crops[4]
    assert x2.dtype == np.uint8 and x2.min() < 100 and ab.shape[1] > x2.shape[1]
    # the same formula alone gives the same pixels: a bad neighbour changes nothing
    assert np.array_equal(typeset.render_many(["a + b"])[0], ab)


@needs_pdflatex
def test_an_error_in_the_amsmath_pass_is_charged_to_its_own_formula():
    """Formulas that fail the plain preamble are retried with amsmath, whose preamble is longer:
    the log's line numbers must be read against that preamble, or a formula whose error TeX reports
    on its closing line (a missing ``\\right``) keeps its broken page and its neighbour is dropped."""
    sources = [r"\mathbb { R } ^ { 2 }", r"\frac { a } {", r"\mathbb { Z }", r"\left( x", r"\text { a } + b"]
    crops = typeset.render_many(sources)
    assert [c is None for c in crops] == [False, True, False, True, False]


@needs_pdflatex
def test_resolution_scales_the_crop():
    low, high = typeset.render_many([r"\sum _ { i } x _ { i }"] * 2, dpis=[100, 200])
    assert abs(high.shape[0] - 2 * low.shape[0]) <= 14  # the 6-px margins do not scale
    with pytest.raises(ValueError, match="one resolution per source"):
        typeset.render_many(["x"], dpis=[100, 200])


def test_a_crop_does_not_keep_its_page_alive():
    page = np.full((2339, 1654), 255, np.uint8)
    page[100:120, 200:260] = 0
    crop = crop_to_ink(page, margin=6)
    assert crop.shape == (32, 72) and crop.min() == 0
    assert not np.shares_memory(crop, page)  # thousands of kept crops must not pin their pages
    assert crop_to_ink(np.full((8, 8), 255, np.uint8)) is None


def test_without_pdflatex_rendering_says_what_to_install(monkeypatch):
    monkeypatch.setattr(typeset.shutil, "which", lambda _name: None)
    with pytest.raises(RuntimeError, match="texlive-latex-base"):
        typeset.render_many(["x"])


@needs_pdflatex
def test_printed_pool_typesets_the_recombined_formulas_with_pdflatex():
    pieces = [normalize_tokens(r"\frac{a}{b}"), normalize_tokens(r"\sum_{i}x_{i}"), normalize_tokens("E=mc^{2}")]
    pool = printed_pool(2, [], 0, 1, pieces=pieces, recombined=4, renderer="pdflatex")
    mathtext = printed_pool(2, [], 0, 1, pieces=pieces, recombined=4, renderer="mathtext")
    assert len(pool) == len(mathtext) == 6
    assert [t for _, t in pool] == [t for _, t in mathtext]  # the same formulas
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(pool[:2], mathtext[:2], strict=True))
    assert not any(np.array_equal(a, b) for (a, _), (b, _) in zip(pool[2:], mathtext[2:], strict=True))
    with pytest.raises(ValueError, match="renderer must be one of"):
        printed_pool(1, [], 0, 1, renderer="tikz")


@pytest.mark.parametrize(("option", "message"), [("renderer", "recombined crops typeset by pdflatex, not mathtext"),
                                                   ("truths_renderer", "training truths typeset by pdflatex, not mathtext")])
def test_a_printed_pool_cache_is_refused_by_a_run_with_another_renderer(tmp_path, monkeypatch, option, message):
    monkeypatch.setattr(train_recognizer, "printed_pool", lambda n, *a, **k: [])
    path = tmp_path / "pool.pkl.gz"
    cached_printed_pool(path, 3, [], 0, 1, **{option: "pdflatex"})
    with gzip.open(path, "rb") as f:
        assert pickle.load(f)[option] == "pdflatex"
    with pytest.raises(SystemExit, match=message):
        cached_printed_pool(path, 3, [], 0, 1)
    cached_printed_pool(path, 3, [], 0, 1, **{option: "pdflatex"})


@needs_pdflatex
def test_printed_pool_can_typeset_the_training_truths_with_pdflatex():
    truths = [normalize_tokens(r"\frac{a}{b}"), normalize_tokens("E=mc^{2}")]
    pool = printed_pool(4, truths, 0, 1, truths_renderer="pdflatex")
    mathtext = printed_pool(4, truths, 0, 1)
    assert len(pool) == len(mathtext) == 4
    # the grammar formulas (even indices) come first and are the same mathtext crops; the truths follow
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(pool[:2], mathtext[0::2], strict=True))
    assert [t for _, t in pool[2:]] == [t for _, t in mathtext[1::2]]
    assert all(t in truths for _, t in pool[2:])
    assert not any(np.array_equal(a, b) for (a, _), (b, _) in zip(pool[2:], mathtext[1::2], strict=True))
    with pytest.raises(ValueError, match="truths_renderer must be one of"):
        printed_pool(1, truths, 0, 1, truths_renderer="tikz")
