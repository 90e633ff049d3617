"""Training/evaluation corpora of the recognizer: the shared InkML reader, splits, label fixes."""
from __future__ import annotations

import numpy as np

from common.inkml import parse_inkml
from pipeline.ml import ink
from pipeline.ml.data import crohme_spelling, handwriting_labels, im2markup_heldout, plain_delimiters, unwrap_mathrm

INKML = b"""<ink xmlns="http://www.w3.org/2003/InkML">
<annotation type="truth">$x^2$</annotation>
<trace id="0">0 0, 10 20, 20 0</trace>
<trace id="1">30 10, 50 10</trace>
</ink>"""


def test_render_ink_uses_the_fixed_evaluation_size_and_draws_dark_strokes_on_white():
    img = ink.render_ink(parse_inkml(INKML))
    assert img.dtype == np.uint8 and img.shape[0] == ink.EVAL_HEIGHT
    assert img.min() < 50 and img[0].min() == 255 and img[-1].min() == 255  # margins stay paper


def test_training_variation_changes_the_picture_but_not_its_height():
    a = ink.render_ink(parse_inkml(INKML))
    b = ink.render_ink(parse_inkml(INKML), pen=3.0, slant=0.2, jitter=0.3, rng=np.random.default_rng(0))
    assert b.shape[0] == a.shape[0] and (a.shape != b.shape or not np.array_equal(a, b))


def test_iter_inks_reads_the_real_test_tarball_with_truths(shared_data):
    name, first = next(ink.iter_inks(shared_data / "crohme" / "test-2016.tar.xz"))
    assert name.endswith(".inkml") and first.truth and first.traces


def test_unwrap_mathrm_drops_the_wrapper_and_keeps_nested_groups():
    toks = r"\frac { p - \mathrm { e } + k } { \mathrm { x _ { 2 } } }".split()
    assert unwrap_mathrm(toks) == r"\frac { p - e + k } { x _ { 2 } }".split()
    assert unwrap_mathrm(r"\mathrm { p g } + a".split()) == "p g + a".split()


def test_plain_delimiters_drop_the_sizing_and_invisible_delimiters_but_keep_what_was_drawn():
    toks = r"\left ( \frac { a } { b } \right ) + \left . x \right | - \left \{ y \right \}".split()
    assert plain_delimiters(toks) == r"( \frac { a } { b } ) + x | - \{ y \}".split()
    assert plain_delimiters(r"( x ) \cdot \leftarrow".split()) == r"( x ) \cdot \leftarrow".split()
    assert plain_delimiters([r"\left"]) == []  # a truth cut short does not crash
    assert plain_delimiters(r"\Bigg ( y \Bigg ) \big [ x \big ]".split()) == "( y ) [ x ]".split()


def test_crohme_spelling_writes_the_test_truths_dot_ellipsis_and_prime():
    toks = r"a \cdot q ^ { n } + \cdots + f ^ { ' } ( x ) \ldots .".split()
    assert crohme_spelling(toks) == r"a . q ^ { n } + \ldots + f ^ { \prime } ( x ) \ldots .".split()
    assert crohme_spelling(r"\times \div \prime".split()) == r"\times \div \prime".split()


def test_handwriting_labels_apply_the_fixes_to_the_real_crohme_truths(shared_data):
    from pipeline.ml.train_recognizer import crohme_train_inks

    labels = [toks for _, toks in crohme_train_inks(shared_data)]
    assert len(labels) > 8000
    assert not any(t in (r"\left", r"\right", r"\Bigg", r"\cdot", r"\cdots", "'") for toks in labels for t in toks)
    assert sum(r"\prime" in toks for toks in labels) > 40 and sum(r"\ldots" in toks for toks in labels) > 200
    assert sum("(" in toks for toks in labels) > 2000  # the parentheses themselves stay
    mixed = r"\mathrm { e } ^ { \left ( x \right ) }".split()
    assert handwriting_labels(mixed) == "e ^ { ( x ) }".split()


def test_im2markup_heldout_fifth_is_fixed_by_name():
    names = [f"{i:05d}.png" for i in range(1000)]
    held = [n for n in names if im2markup_heldout(n)]
    assert 150 < len(held) < 250 and held == [n for n in names if im2markup_heldout(n)]


def test_typeset_samples_in_one_font_draw_every_formula_in_that_font():
    from pipeline.ml import synth

    formulas = [["x", "^", "{", "2", "}", "+", "1"], ["\\frac", "{", "a", "}", "{", "b", "}"], ["y", "=", "3"]]
    crops = synth.typeset_samples(formulas, seed=7, fonts=("cm",))
    assert [toks for _, toks in crops] == formulas
    rng = np.random.default_rng(7)
    for (img, toks) in crops:
        size = float(rng.uniform(16, 30))
        rng.choice(["cm"])  # the font draw keeps the sizes' sequence as with several fonts
        assert np.array_equal(img, synth.render_mathtext(" ".join(toks), size=size, font="cm"))
    mixed = synth.typeset_samples(formulas, seed=7)
    assert any(not np.array_equal(a, b) for (a, _), (b, _) in zip(crops, mixed, strict=True))
