"""common.inkml: reading InkML in its real variants and rendering strokes."""
from __future__ import annotations

import tarfile

import numpy as np
import pytest

from common.inkml import Ink, InkMLError, ink_bbox, parse_inkml, render_ink

NS = 'xmlns="http://www.w3.org/2003/InkML"'


def inkml(traces: list[str], truth: str | None = "$x+1$", ns: str = NS, extra: str = "") -> str:
    ann = f'<annotation type="truth">{truth}</annotation>' if truth is not None else ""
    body = "".join(f'<trace id="{i}">{t}</trace>' for i, t in enumerate(traces))
    return f'<ink {ns}><annotation type="UI">file_42</annotation><annotation type="writer">w7</annotation>{ann}{extra}{body}</ink>'


def test_parses_integer_points_and_strips_dollars():
    ink = parse_inkml(inkml(["10 20, 30 40, 50 60", "0 0, 5 5"]))
    assert ink.truth == "x+1" and ink.ui == "file_42" and ink.writer == "w7"
    assert [t.shape for t in ink.traces] == [(3, 2), (2, 2)]
    assert ink.traces[0].dtype == np.float64 and ink.traces[0][2].tolist() == [50.0, 60.0]


def test_parses_float_points_with_time_channel():
    ink = parse_inkml(inkml(["1.5 2.25 1000, 3.75 4.5 1010", "-1e1 2E0 1020"]))
    assert ink.traces[0].tolist() == [[1.5, 2.25], [3.75, 4.5]]
    assert ink.traces[1].tolist() == [[-10.0, 2.0]]


def test_parses_without_namespace_and_from_bytes_and_path(tmp_path):
    text = inkml(["1 1, 2 2"], ns="")
    assert parse_inkml(text.encode()).traces[0].shape == (2, 2)
    path = tmp_path / "sample_7.inkml"
    path.write_text(inkml(["1 1, 2 2"]).replace('<annotation type="UI">file_42</annotation>', ""))
    assert parse_inkml(path).ui == "sample_7"  # no UI annotation: the file name


def test_missing_truth_gives_none_not_an_error():
    ink = parse_inkml(inkml(["1 1, 2 2"], truth=None))
    assert ink.truth is None and len(ink.traces) == 1


def test_symbol_truth_of_a_trace_group_is_not_the_formula_truth():
    group = '<traceGroup><annotation type="truth">x</annotation></traceGroup>'
    assert parse_inkml(inkml(["1 1, 2 2"], truth=None, extra=group)).truth is None


@pytest.mark.parametrize("text, reason", [
    ("<ink><trace>1 2, 3", "malformed XML"),
    ("", "empty"),
    ("<svg/>", "not <ink>"),
    (inkml([]), "no <trace>"),
    (inkml(["1 a, 2 3"]), "not numeric"),
    (inkml(["1, 2 3"]), "fewer than two"),
])
def test_unusable_files_raise_a_readable_reason(text, reason):
    with pytest.raises(InkMLError, match=reason):
        parse_inkml(text)


def test_render_has_fixed_height_and_ink_aspect_ratio():
    ink = Ink(traces=[np.array([[0, 0], [100, 50]], float)])
    img = render_ink(ink, height=100, margin=10, pen_width=2)
    assert img.mode == "L" and img.size[1] == 100
    assert img.size[0] == pytest.approx(2 * 80 + 20, abs=2)  # 100x50 ink scaled to 80 px high
    px = np.asarray(img)
    assert px.min() == 0 and px.max() == 255  # black ink on white
    assert len(np.unique(px)) > 2  # antialiased edges
    ys, xs = np.nonzero(px < 128)
    assert ys.min() >= 8 and ys.max() <= 92  # inside the margin (plus half the pen)


def test_render_flat_ink_is_not_blown_up_and_max_width_is_kept():
    minus = Ink(traces=[np.array([[0, 10], [100, 10]], float)])
    img = render_ink(minus, height=64, margin=4, max_width=300)
    assert img.size == (300, 64) or img.size[0] <= 300
    dark_rows = np.nonzero((np.asarray(img) < 128).any(axis=1))[0]
    assert len(dark_rows) <= 6  # a thin bar, centred
    assert 20 < dark_rows.mean() < 44


def test_single_point_strokes_render_as_dots():
    ink = Ink(traces=[np.array([[0, 0], [0, 100]], float), np.array([[50, 50]], float)])
    px = np.asarray(render_ink(ink, height=64, margin=4, pen_width=4))
    assert (px < 128).sum() > 0


def test_slant_and_jitter_change_the_image_deterministically():
    ink = Ink(traces=[np.array([[0, 0], [0, 100]], float), np.array([[10, 100], [12, 100]], float)])
    plain = np.asarray(render_ink(ink, height=64))
    slanted = np.asarray(render_ink(ink, height=64, slant=0.3))
    assert slanted.shape[1] > plain.shape[1]  # the vertical bar leans, so the ink is wider
    a = np.asarray(render_ink(ink, height=64, jitter=1.0, rng=np.random.default_rng(1)))
    b = np.asarray(render_ink(ink, height=64, jitter=1.0, rng=np.random.default_rng(1)))
    c = np.asarray(render_ink(ink, height=64, jitter=1.0, rng=np.random.default_rng(2)))
    assert (a == b).all() and not (a == plain).all() and a.shape == c.shape and not (a == c).all()


def test_symbol_segmentation_maps_trace_groups_to_stroke_indices():
    groups = ('<traceGroup><annotation type="truth">Segmentation</annotation>'
              '<traceGroup><annotation type="truth">x</annotation><traceView traceDataRef="0"/>'
              '<traceView traceDataRef="2"/></traceGroup>'
              '<traceGroup><annotation type="truth">+</annotation><traceView traceDataRef="1"/>'
              '<traceView traceDataRef="9"/></traceGroup>'
              '<traceGroup><annotation type="truth">?</annotation><traceView traceDataRef="9"/></traceGroup>'
              '</traceGroup>')
    ink = parse_inkml(inkml(["0 0, 1 1", "2 2, 3 3", "1 0, 0 1"], extra=groups))
    # a reference to a stroke the file lacks is dropped; a group left with none is no symbol
    assert ink.symbols == [("x", [0, 2]), ("+", [1])]
    assert parse_inkml(inkml(["0 0, 1 1"])).symbols == []


def test_ink_bbox_spans_all_strokes():
    ink = Ink(traces=[np.array([[1, 2], [3, 4]], float), np.array([[-5, 9]], float)])
    assert ink_bbox(ink) == (-5.0, 2.0, 3.0, 9.0)


def test_every_real_crohme_2016_test_ink_parses_with_truth(shared_data):
    path = shared_data / "crohme" / "test-2016.tar.xz"
    count = 0
    with tarfile.open(path) as tf:
        for info in tf:
            if not info.name.endswith(".inkml"):
                continue
            ink = parse_inkml(tf.extractfile(info).read(), name=info.name)
            assert ink.truth and not ink.truth.startswith("$"), info.name
            assert ink.traces and all(t.shape[1] == 2 for t in ink.traces)
            # every test ink is segmented into symbols, each stroke in at most one of them
            strokes = [i for _, idx in ink.symbols for i in idx]
            assert ink.symbols and len(strokes) == len(set(strokes)) <= len(ink.traces), info.name
            count += 1
            if count == 150:
                break
    assert count == 150
