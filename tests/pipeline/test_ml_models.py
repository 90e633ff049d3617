"""The formula models on tiny inputs, on the CPU, with the committed weights; geometry of the rectifier."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from pipeline.ml import synth
from pipeline.ml.detector import DetectorConfig, postprocess, rectify, top_half_mask, widen_quad
from pipeline.ml.evaluate import detector_metrics, quad_iou, recognizer_metrics
from pipeline.ml.inference import WEIGHTS_DIR, FormulaReader, load_detector, load_recognizer


@pytest.fixture(scope="module")
def reader():
    torch.set_num_threads(1)
    return FormulaReader(device="cpu")


def test_committed_weights_fit_the_size_budget_and_have_model_cards():
    total = sum(p.stat().st_size for p in WEIGHTS_DIR.rglob("*") if p.is_file())
    assert total <= 25 * 1024 * 1024
    for kind in ("detector", "recognizer"):
        assert (WEIGHTS_DIR / kind / "weights.pt").exists()
        assert json.loads((WEIGHTS_DIR / kind / "config.json").read_text())
        card = (WEIGHTS_DIR / kind / "MODEL_CARD.md").read_text()
        assert "NonCommercial" in card and "Architecture" in card


def test_models_load_on_cpu():
    model, cfg = load_detector(device="cpu")
    assert next(model.parameters()).device.type == "cpu"
    rec = load_recognizer(device="cpu")
    assert rec.cfg.vocab[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]


def test_detector_returns_ordered_quads_with_scores_in_image_pixels(reader):
    rng = np.random.default_rng(5)
    crop = synth.render_pillow_text("x + 1 = 2")
    photo = synth.compose_photo(rng, [crop], size=(200, 300), max_angle=0)
    (regions,) = reader.detect([photo.image])
    for r in regions:
        assert r.quad.shape == (4, 2)
        assert (r.quad[:, 0] >= 0).all() and (r.quad[:, 0] < 300).all()
        assert (r.quad[:, 1] >= 0).all() and (r.quad[:, 1] < 200).all()
        assert 0.0 <= r.score <= 1.0
        assert r.mask.shape == (200, 300)


def test_recognizer_returns_tokens_with_confidences_in_batches(reader):
    crops = [synth.render_pillow_text("a + b"), synth.render_pillow_text("12 = x")]
    readings = reader.recognize(crops)
    assert len(readings) == 2
    for r in readings:
        assert len(r.tokens) == len(r.token_confidences)
        assert all(0.0 <= c <= 1.0 for c in r.token_confidences)
        assert 0.0 <= r.confidence <= 1.0
        assert r.latex == " ".join(r.tokens)


def test_full_pipeline_read_returns_regions_with_latex(reader):
    rng = np.random.default_rng(1)
    photo = synth.compose_photo(rng, [synth.render_pillow_text("y = 2 x")], size=(160, 240))
    (result,) = reader.read([photo.image])
    assert set(result) == {"regions", "seconds"}
    for region in result["regions"]:
        assert {"points", "score", "latex", "latex_confidence", "token_confidences"} <= set(region)


def test_rectifier_straightens_a_rotated_quad_upright():
    # a 120x40 rectangle, top half red and bottom half blue, rotated by 150 degrees
    canvas = np.full((300, 300, 3), 255, np.uint8)
    w, h = 120, 40
    corners = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    a = np.deg2rad(150)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    quad = (corners @ rot.T + 150).astype(np.float32)
    mid_l, mid_r = (quad[0] + quad[3]) / 2, (quad[1] + quad[2]) / 2
    cv2.fillConvexPoly(canvas, np.round([quad[0], quad[1], mid_r, mid_l]).astype(np.int32), (255, 0, 0))
    cv2.fillConvexPoly(canvas, np.round([mid_l, mid_r, quad[2], quad[3]]).astype(np.int32), (0, 0, 255))
    out = rectify(canvas, quad)
    assert abs(out.shape[1] - w) <= 1 and abs(out.shape[0] - h) <= 1
    top, bottom = out[5:h // 2 - 5, 10:-10], out[h // 2 + 5:-5, 10:-10]
    assert (top[..., 0] > 200).mean() > 0.95 and (top[..., 2] < 60).mean() > 0.95
    assert (bottom[..., 2] > 200).mean() > 0.95 and (bottom[..., 0] < 60).mean() > 0.95
    assert rectify(canvas, quad, height=20).shape[0] == 20


def test_postprocess_recovers_reading_order_of_an_upside_down_formula():
    cfg = DetectorConfig(threshold=0.5, min_area=0.0)
    quad = np.float32([[90, 70], [30, 70], [30, 50], [90, 50]])  # rotated 180 degrees: top edge is y=70
    prob = np.zeros((128, 128), np.float32)
    cv2.fillConvexPoly(prob, quad.astype(np.int32), 1.0)
    top = top_half_mask(quad, (128, 128)).astype(np.float32)
    (region,) = postprocess(prob, top, (256, 256), cfg)
    # the first two corners (the formula's top edge) must lie on the lower side of the image
    assert region.quad[0, 1] > region.quad[2, 1] and region.quad[1, 1] > region.quad[3, 1]
    assert quad_iou(region.quad / 2, quad) > 0.8


def test_postprocess_fits_a_perspective_quad_below_the_map_pixel_size():
    cfg = DetectorConfig(threshold=0.5, min_area=0.0)
    # a keystoned, slightly rotated formula 6 map pixels high: the old rectangle fit scored 0.905
    # IoU here, fitted edges land within a fraction of a map pixel (0.97)
    truth = np.float32([[20.3, 40.2], [100.6, 46.1], [99.1, 54.4], [21.2, 47.1]])
    big = np.zeros((128 * 8, 128 * 8), np.uint8)
    cv2.fillConvexPoly(big, np.round(truth * 8).astype(np.int32), 255)
    # the soft map of a perfect network: the covered fraction of each map pixel
    prob = cv2.resize(big, (128, 128), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    top = top_half_mask(truth, (128, 128)).astype(np.float32)
    (region,) = postprocess(prob, top, (384, 512), cfg)  # (h, w): 4 px per map pixel across, 3 down
    in_map = region.quad / [4.0, 3.0]
    assert quad_iou(in_map, truth) > 0.95
    # reading order: the corner nearest the truth's top-left comes first
    assert np.linalg.norm(in_map - truth, axis=1).max() < 1.0


def test_postprocess_takes_a_long_edge_as_the_top_when_the_upper_half_map_is_unsure():
    cfg = DetectorConfig(threshold=0.5, min_area=0.0)
    quad = np.float32([[40, 20], [50, 20], [50, 100], [40, 100]])  # a formula written bottom-to-top
    prob = np.zeros((128, 128), np.float32)
    cv2.fillConvexPoly(prob, quad.astype(np.int32), 1.0)
    (region,) = postprocess(prob, np.full((128, 128), 0.5, np.float32), (128, 128), cfg)
    top_edge = np.linalg.norm(region.quad[1] - region.quad[0])
    side_edge = np.linalg.norm(region.quad[3] - region.quad[0])
    assert top_edge > 4 * side_edge


def test_postprocess_splits_two_formulas_joined_by_a_weak_bridge_when_asked():
    prob = np.zeros((128, 128), np.float32)
    upper, lower = np.float32([[20, 30], [100, 30], [100, 40], [20, 40]]), np.float32([[20, 42], [100, 42], [100, 52], [20, 52]])
    cv2.fillConvexPoly(prob, upper.astype(np.int32), 0.97)
    cv2.fillConvexPoly(prob, lower.astype(np.int32), 0.97)
    prob[40:43, 20:101] = 0.7  # the gap between two lines, blurred shut by the network
    top = np.full((128, 128), 0.5, np.float32)
    assert len(postprocess(prob, top, (128, 128), DetectorConfig(min_area=0.0))) == 1
    regions = postprocess(prob, top, (128, 128), DetectorConfig(min_area=0.0, split_min_frac=0.2))
    assert len(regions) == 2
    assert quad_iou(regions[0].quad, upper) > 0.8 and quad_iou(regions[1].quad, lower) > 0.8


def test_compose_photo_is_seeded_and_its_truth_matches_the_mask():
    crop = synth.render_pillow_text("3 + 4")
    a = synth.compose_photo(np.random.default_rng(7), [crop, crop, crop], size=(256, 256))
    b = synth.compose_photo(np.random.default_rng(7), [crop, crop, crop], size=(256, 256))
    assert np.array_equal(a.image, b.image) and len(a.quads) == len(b.quads) >= 1
    for q in a.quads:
        assert q.shape == (4, 2) and q.min() >= 0 and q[:, 0].max() < 256 and q[:, 1].max() < 256
    drawn = np.zeros((256, 256), np.uint8)
    for q in a.quads:
        cv2.fillConvexPoly(drawn, np.round(q).astype(np.int32), 1)
    assert np.array_equal(drawn, a.mask)


def test_compose_photo_truth_is_the_ink_box_not_the_pasted_crop():
    # a formula with 30 px of blank paper around it: the truth quad is the ink's box, warped with it
    ink = synth.render_pillow_text("x = 1")
    crop = np.full((ink.shape[0] + 60, ink.shape[1] + 60), 255, np.uint8)
    crop[30:-30, 30:-30] = ink
    photo = synth.compose_photo(np.random.default_rng(3), [crop], size=(300, 400), max_angle=0, max_persp=0.0)
    (truth,), (pasted,) = photo.quads, photo.crop_quads
    assert photo.placed == [0]
    ys, xs = np.nonzero(ink < 200)
    scale = (pasted[1, 0] - pasted[0, 0]) / crop.shape[1]  # upright, no perspective: one scale
    assert cv2.contourArea(truth) < 0.7 * cv2.contourArea(pasted)
    # the truth's corners are the ink box's, in photo pixels (to a pixel, the rotation being ~6 deg at most)
    width = np.linalg.norm(truth[1] - truth[0])
    assert abs(width - (xs.max() + 1 - xs.min()) * scale) < 1.5
    height = np.linalg.norm(truth[3] - truth[0])
    assert abs(height - (ys.max() + 1 - ys.min()) * scale) < 1.5
    # it sits where the ink sits in the crop: 30 px of crop margin in from the pasted corner
    assert np.allclose(truth[0], pasted[0] + (30 + np.array([xs.min(), ys.min()])) * scale, atol=1.5)


def test_compose_photo_says_which_crop_each_quad_holds():
    small, wide = synth.render_pillow_text("1"), synth.render_pillow_text("a + b + c + d + e + f + g + h")
    photo = synth.compose_photo(np.random.default_rng(11), [small, wide, small], size=(256, 256))
    assert len(photo.placed) == len(photo.quads) == len(photo.crop_quads)
    assert photo.placed == sorted(set(photo.placed)) and set(photo.placed) <= {0, 1, 2}


def test_widen_quad_adds_the_same_margin_on_every_side_in_the_quads_own_frame():
    quad = np.float32([[100, 50], [300, 50], [300, 90], [100, 90]])  # 200 x 40
    grown = widen_quad(quad, 0.25)  # 10 px on every side
    assert np.allclose(grown, [[90, 40], [310, 40], [310, 100], [90, 100]], atol=1e-3)
    assert np.array_equal(widen_quad(quad, 0.0), quad)
    turned = np.roll(quad, 2, axis=0)  # the same region upside down: grown alike, corners kept in order
    assert np.allclose(widen_quad(turned, 0.25), np.roll(grown, 2, axis=0), atol=1e-3)


def test_reader_reads_each_region_with_the_detectors_crop_margin(reader, monkeypatch):
    from pipeline.ml import inference

    seen = []
    monkeypatch.setattr(inference, "rectify", lambda img, quad: seen.append(np.asarray(quad)) or img[:40, :80])
    rng = np.random.default_rng(1)
    photo = synth.compose_photo(rng, [synth.render_pillow_text("y = 2 x")], size=(160, 240))
    regions = reader.detect([photo.image], with_masks=False)[0]
    assert regions, "the committed detector finds the formula"
    assert reader.crop_margin == reader.det_cfg.crop_margin > 0  # the committed weights draw ink-tight quads
    # which way up is left out: the orienter's own look at each crop would be rectified too
    monkeypatch.setattr(reader, "orient", False)
    tight = inference.FormulaReader(device="cpu", crop_margin=0.0, orient=False)
    reader.read([photo.image])
    tight.read([photo.image])
    grown, plain = seen[0], seen[len(regions)]
    assert np.allclose(plain, regions[0].quad, atol=1e-3)
    assert np.allclose(grown, widen_quad(regions[0].quad, reader.crop_margin), atol=1e-3)
    assert cv2.contourArea(grown) > cv2.contourArea(plain) * 1.2


@pytest.mark.parametrize("fn", [synth.add_shadow, synth.add_highlighter, synth.add_whiteout, synth.blur, synth.jpeg])
def test_each_degradation_keeps_shape_and_changes_pixels(fn):
    img = synth.paper(np.random.default_rng(0), 120, 160)
    cv2.putText(img, "x+1", (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (0, 0, 0), 3)
    out = fn(img, np.random.default_rng(3))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.array_equal(out, img)


def test_mathtext_renders_a_tight_dark_on_white_crop():
    crop = synth.render_mathtext(r"\frac{a}{b}+\sqrt{x}", size=20, font="cm")
    assert crop.ndim == 2 and crop.min() < 60 and crop[0].min() > 200 and crop[-1].min() > 200


def test_metrics_on_known_answers():
    summary, rows = recognizer_metrics([(r"\frac12", r"{1\over 2}"), ("a + b", "a - b"), ("x", "y z w")])
    assert summary["exact_match"] == pytest.approx(1 / 3)
    assert summary["within_1"] == pytest.approx(2 / 3)
    assert [r["edits"] for r in rows] == [0, 1, 3]
    box = [[0, 0], [10, 0], [10, 10], [0, 10]]
    shifted = [[5, 0], [15, 0], [15, 10], [5, 10]]
    summary, _ = detector_metrics([([box], [box]), ([shifted], [box]), ([], [box])])
    assert summary["precision"] == pytest.approx(1 / 2) and summary["recall"] == pytest.approx(1 / 3)
    assert summary["mean_iou"] == pytest.approx(1.0)


def test_beam_search_of_width_one_is_greedy_and_wider_beams_return_aligned_confidences(reader):
    from pipeline.ml.recognizer import batch_crops, prepare_crop

    rec = reader.recognizer
    crops = [synth.render_pillow_text(t) for t in ("a + b", "12 = x", "y")]
    x = batch_crops([prepare_crop(c, rec.cfg.height, rec.cfg.max_width) for c in crops])
    assert rec.beam(x, width=1, max_len=20) == rec.greedy(x, max_len=20)
    wide = rec.beam(x, width=3, max_len=20)
    assert len(wide) == 3
    for toks, confs in wide:
        assert len(toks) == len(confs) <= 20 and "<eos>" not in toks
        assert all(0.0 <= c <= 1.0 for c in confs)


def test_zoom_window_is_square_inside_the_image_and_holds_the_quad():
    from pipeline.ml.detector import _window

    quad = np.float32([[700, 1000], [1300, 1000], [1300, 1040], [700, 1040]])  # a formula line on an A4 page
    x0, y0, x1, y1 = _window(quad, (2339, 1654))
    assert x1 - x0 == y1 - y0 and 0 <= x0 and 0 <= y0 and x1 <= 1654 and y1 <= 2339
    assert x0 <= 700 and x1 >= 1300 and y0 <= 1000 and y1 >= 1040
    # near the border the window shifts inward instead of leaving the image
    x0, y0, x1, y1 = _window(quad - [690, 990], (2339, 1654))
    assert x0 == 0 and y0 == 0


def _greedy_by_full_recompute(model, images, max_len):
    """The reference decoding: the whole prefix through nn.TransformerDecoder at every step."""
    mem, pad = model.encode(images)
    seq = torch.full((images.shape[0], 1), model.stoi["<bos>"], dtype=torch.long)
    for _ in range(max_len + 1):
        nxt = model._decode_step(seq, mem, pad)[:, -1].argmax(-1)
        seq = torch.cat([seq, nxt[:, None]], 1)
    return seq[:, 1:]


def test_incremental_decoding_matches_the_full_decoder_step_for_step():
    # float32 throughout: a bfloat16 memory (the default on a CPU with AMX) reads close, not equal
    model = load_recognizer(device="cpu", precision="float32")
    model.eval()
    torch.manual_seed(3)
    images = torch.rand(3, 1, model.cfg.height, 160)
    images[1, :, :, 96:] = 0  # right padding: masked memory columns
    with torch.no_grad():
        mem, pad = model.encode(images)
        tokens = torch.randint(4, len(model.cfg.vocab), (3, 15))
        full = model._decode_step(tokens, mem, pad)
        state = model._decode_init(mem, pad)
        step = torch.stack([model._decode_next(state, tokens[:, i]) for i in range(15)], 1)
        assert torch.allclose(full, step, atol=1e-4)
        reference = _greedy_by_full_recompute(model, images, 12)
    eos = model.stoi["<eos>"]
    for i, (toks, _) in enumerate(model.greedy(images, max_len=12)):
        ids = reference[i].tolist()
        expected = ids[: ids.index(eos)] if eos in ids else ids
        assert toks == [model.cfg.vocab[t] for t in expected]


@pytest.mark.parametrize("src", [r"x^{2}+3x-4=0", r"\frac{a+b}{2}"])
def test_a_crop_upside_down_is_turned_and_read_the_right_way_up(reader, src):
    upright = synth.render_mathtext(src, size=24, font="cm")
    (plain,) = reader.recognize([upright])
    turned, straight = reader.recognize([cv2.rotate(upright, cv2.ROTATE_180), upright], orient=True)
    assert turned.turned and not straight.turned
    assert turned.tokens == straight.tokens == plain.tokens
    (unoriented,) = reader.recognize([cv2.rotate(upright, cv2.ROTATE_180)])
    assert not unoriented.turned and unoriented.tokens != plain.tokens


def test_read_puts_the_top_left_corner_first_when_the_detector_had_the_formula_upside_down(reader, monkeypatch):
    from pipeline.ml.detector import Region

    crop = synth.render_mathtext(r"y=2x+1", size=24, font="cm")
    h, w = crop.shape
    page = np.full((h + 40, w + 40, 3), 255, np.uint8)
    page[20:20 + h, 20:20 + w] = crop[..., None]
    top_left_first = np.float32([[20, 20], [20 + w, 20], [20 + w, 20 + h], [20, 20 + h]])
    bottom_right_first = np.roll(top_left_first, 2, axis=0)
    monkeypatch.setattr(reader, "detect", lambda images, with_masks=False: [[Region(bottom_right_first, 0.9)]])
    (result,) = reader.read([page])
    (region,) = result["regions"]
    assert region["points"][0] == [20.0, 20.0]
    assert region["latex"] == "y = 2 x + 1"
    monkeypatch.setattr(reader, "orient", False)
    (result,) = reader.read([page])
    assert result["regions"][0]["points"][0] == [20.0 + w, 20.0 + h]


def test_greedy_drops_finished_rows_without_changing_any_reading():
    from pipeline.ml.recognizer import batch_crops, prepare_crop

    model = load_recognizer(device="cpu")
    crops = [synth.render_mathtext(s, size=22, font="cm") for s in (r"1", r"a+b=c", r"\frac{x^{2}+1}{y-3}=\sqrt{z}")]
    images = batch_crops([prepare_crop(c, model.cfg.height, model.cfg.max_width) for c in crops])
    with torch.no_grad():
        readings = model.greedy(images, max_len=40)
        reference = _greedy_by_full_recompute(model, images, 40)  # every row decoded to the end
    eos = model.stoi["<eos>"]
    assert len({len(toks) for toks, _ in readings}) == 3  # the rows really ended at different steps
    for (toks, confs), ids in zip(readings, reference.tolist(), strict=True):
        expected = ids[: ids.index(eos)] if eos in ids else ids
        assert toks == [model.cfg.vocab[t] for t in expected] and len(confs) == len(toks)


def test_building_a_reader_leaves_autograd_on_for_the_rest_of_the_process():
    # a reader once switched autograd off process-wide, which broke training run in the same process
    FormulaReader(device="cpu")
    assert torch.is_grad_enabled()
