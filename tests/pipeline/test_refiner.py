"""The corner refiner: its view geometry, its safety net, the committed weights and its training script."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from pipeline.ml import synth, train_refiner
from pipeline.ml.evaluate import quad_iou
from pipeline.ml.inference import WEIGHTS_DIR, FormulaReader, load_refiner
from pipeline.ml.refiner import (
    QuadRefiner,
    RefinerConfig,
    align_to,
    corners_from_view,
    corners_to_view,
    prior_corners,
    refine_quads,
    unturn,
    view,
)

QUAD = np.float32([[120, 80], [420, 95], [415, 150], [118, 132]])  # a keystoned, slightly turned formula


def _photo(seed: int = 4, text: str = "3 x + 7 = 19"):
    crop = synth.render_pillow_text(text, size=40)
    return synth.compose_photo(np.random.default_rng(seed), [crop], size=(360, 480), max_angle=20, max_persp=0.05,
                               height_frac=(0.15, 0.2))


def test_view_maps_the_quad_to_its_prior_corners_and_back():
    cfg = RefinerConfig()
    gray = np.full((300, 500), 200, np.uint8)
    v, m = view(gray, QUAD, cfg)
    assert v.shape == (cfg.height, cfg.width) and v.dtype == np.uint8
    w = (np.linalg.norm(QUAD[1] - QUAD[0]) + np.linalg.norm(QUAD[2] - QUAD[3])) / 2
    h = (np.linalg.norm(QUAD[3] - QUAD[0]) + np.linalg.norm(QUAD[2] - QUAD[1])) / 2
    assert np.allclose(corners_to_view(QUAD, m, cfg), prior_corners(cfg, w / h), atol=1e-4)
    assert np.allclose(corners_from_view(corners_to_view(QUAD, m, cfg).reshape(-1), m, cfg), QUAD, atol=1e-3)


def test_a_large_region_is_shrunk_with_area_averaging_before_the_warp():
    cfg = RefinerConfig()
    # one-pixel stripes on a 4,000-pixel photo: interpolating alone would alias them into bands
    gray = np.zeros((1200, 4000), np.uint8)
    gray[::2] = 255
    big = np.float32([[400, 300], [3600, 300], [3600, 800], [400, 800]])
    v, m = view(gray, big, cfg)
    assert abs(float(v.mean()) - 127.5) < 6 and v.std() < 10
    # the homography still refers to the full-size photo
    assert np.allclose(corners_from_view(corners_to_view(big, m, cfg).reshape(-1), m, cfg), big, atol=1e-2)


def test_the_target_is_the_truth_in_the_input_quads_corner_order():
    upside_down = np.roll(QUAD, 2, axis=0) + 3
    assert np.array_equal(align_to(QUAD, upside_down), np.roll(QUAD, 2, axis=0))
    assert np.array_equal(align_to(QUAD, QUAD), QUAD)


class _Constant(torch.nn.Module):
    """A refiner that always answers the same normalised corners."""

    def __init__(self, corners):
        super().__init__()
        self.corners = torch.tensor(np.asarray(corners, np.float32).reshape(1, 8))

    def forward(self, x):
        return self.corners.expand(x.shape[0], 8)


def test_a_failed_look_keeps_the_detectors_quad():
    cfg = RefinerConfig(iterations=1, turned_look=False)
    image = np.full((300, 500, 3), 230, np.uint8)
    twisted = [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]  # a bow tie: not convex
    far_off = [[0.0, 0.0], [0.05, 0.0], [0.05, 0.05], [0.0, 0.05]]  # overlaps the input far below min_iou
    for corners in (twisted, far_off):
        (out,) = refine_quads(_Constant(corners), cfg, [image], [[QUAD]])
        assert np.array_equal(out[0], QUAD)


def test_an_answer_is_mapped_back_into_image_pixels_in_the_input_order():
    cfg = RefinerConfig(iterations=1, turned_look=False)
    image = np.full((300, 500, 3), 230, np.uint8)
    _, m = view(image[..., 0], QUAD, cfg)
    wanted = QUAD + np.float32([[2, -3], [-4, 1], [3, 2], [-1, 4]])
    (out,) = refine_quads(_Constant(corners_to_view(wanted, m, cfg)), cfg, [image], [[QUAD]])
    assert np.allclose(out[0], wanted, atol=0.05)


def test_an_answer_for_the_turned_view_is_turned_back_onto_the_upright_views_corners():
    upright = np.float32([[0.1, 0.2], [0.8, 0.25], [0.85, 0.7], [0.12, 0.75]])
    # seen turned by 180 degrees, the quad's third corner is the view's first, at (1 - x, 1 - y)
    turned = np.stack([1 - upright[(k + 2) % 4] for k in range(4)]).reshape(1, 8)
    assert np.allclose(unturn(turned), upright.reshape(1, 8))
    # averaging both looks of a model that answers the truth either way up gives the truth
    cfg = RefinerConfig(iterations=1, turned_look=True)
    image = np.full((300, 500, 3), 230, np.uint8)
    _, m = view(image[..., 0], QUAD, cfg)
    wanted = QUAD + np.float32([[2, -3], [-4, 1], [3, 2], [-1, 4]])
    corners = corners_to_view(wanted, m, cfg)

    looks = []

    class EitherWayUp(torch.nn.Module):
        def forward(self, x):
            # a turned view is darker in its last row here: answer the turned corners for it
            flip = x[:, 0, -1, 0] < 0.5
            looks.extend(flip.tolist())
            turned_corners = torch.tensor(np.stack([1 - corners[(k + 2) % 4] for k in range(4)]).reshape(1, 8))
            return torch.where(flip[:, None], turned_corners, torch.tensor(corners.reshape(1, 8)))

    marked = image.copy()
    marked[:] = 230
    (out,) = refine_quads(EitherWayUp(), cfg, [_with_dark_top(marked, m, cfg)], [[QUAD]])
    assert looks == [False, True]  # the upright look, then the turned one
    assert np.allclose(out[0], wanted, atol=0.05)


def _with_dark_top(image, m, cfg):
    """The image with its view's top rows dark, so a view turned by 180 degrees shows them last."""
    out = image.copy()
    band = np.float32([[0, 0], [cfg.width, 0], [cfg.width, 4], [0, 4]])
    corners = cv2.perspectiveTransform(band[None].astype(np.float64), np.linalg.inv(m))[0]
    cv2.fillConvexPoly(out, np.round(corners).astype(np.int32), (0, 0, 0))
    return out


def test_the_committed_refiner_pulls_a_loose_quad_onto_the_formula():
    loaded = load_refiner(device="cpu")
    assert loaded is not None, "the committed detector folder carries refiner.pt"
    model, cfg = loaded
    torch.set_num_threads(1)
    gains = []
    for seed in range(6):
        photo = _photo(seed)
        (truth,) = photo.quads
        rng = np.random.default_rng(100 + seed)
        loose = train_refiner.perturb(truth, rng, 1.0)
        before = quad_iou(loose, truth)
        (after_quads,) = refine_quads(model, cfg, [photo.image], [[loose]])
        gains.append(quad_iou(after_quads[0], truth) - before)
        # corner order kept: the refined first corner is the one nearest the loose quad's first
        assert np.argmin(np.linalg.norm(after_quads[0] - loose[0], axis=1)) == 0
    assert np.mean(gains) > 0.05 and min(gains) > -0.05


def test_the_reader_refines_detections_unless_told_not_to():
    torch.set_num_threads(1)
    photo = _photo(2)
    plain = FormulaReader(device="cpu", refine_corners=False)
    refined = FormulaReader(device="cpu")
    assert plain.refiner is None and refined.refiner is not None
    (a,), (b,) = plain.detect([photo.image], with_masks=False), refined.detect([photo.image], with_masks=False)
    assert len(a) == len(b) >= 1
    assert not np.allclose(a[0].quad, b[0].quad) and a[0].score == b[0].score
    assert quad_iou(b[0].quad, photo.quads[0]) >= quad_iou(a[0].quad, photo.quads[0]) - 0.02


def test_a_refined_regions_mask_is_its_refined_quad_filled_and_an_unrefined_one_keeps_the_detectors():
    from pipeline.ml.detector import quad_mask

    torch.set_num_threads(1)
    photo = _photo(2)
    (plain,) = FormulaReader(device="cpu", refine_corners=False).detect([photo.image])
    (refined,) = FormulaReader(device="cpu").detect([photo.image])
    shape = photo.image.shape[:2]
    assert refined[0].mask.shape == plain[0].mask.shape == shape
    assert np.array_equal(refined[0].mask, quad_mask(refined[0].quad, shape))
    assert not np.array_equal(plain[0].mask, quad_mask(plain[0].quad, shape))  # the detector's own pixels
    truth = quad_mask(photo.quads[0], shape)

    def iou(m):
        return (m & truth).sum() / (m | truth).sum()

    assert iou(refined[0].mask) > 0.7
    (no_masks,) = FormulaReader(device="cpu").detect([photo.image], with_masks=False)
    assert no_masks[0].mask is None


def test_quad_mask_fills_the_quad_in_image_pixels():
    from pipeline.ml.detector import quad_mask

    m = quad_mask(np.float32([[2, 1], [8, 1], [8, 4], [2, 4]]), (6, 10))
    assert m.dtype == bool and m.sum() == 7 * 4 and m[1:5, 2:9].all()


def test_a_detector_folder_without_a_refiner_detects_as_it_is(tmp_path):
    for name in ("weights.pt", "config.json"):
        (tmp_path / name).write_bytes((WEIGHTS_DIR / "detector" / name).read_bytes())
    assert load_refiner(tmp_path, device="cpu") is None
    reader = FormulaReader(detector_dir=tmp_path, device="cpu")
    assert reader.refiner is None


def test_perturbed_truths_stay_near_the_truth_and_come_in_the_detectors_orders():
    rng = np.random.default_rng(0)
    truth = np.float32([[100, 100], [400, 100], [400, 140], [100, 140]])
    firsts = set()
    for _ in range(200):
        q = train_refiner.perturb(truth, rng, 1.0)
        assert quad_iou(q, truth) > 0.3
        firsts.add(int(np.argmin(np.linalg.norm(truth - q[0], axis=1))))
    assert firsts == {0, 2}  # a long formula: the top edge is one of the long ones


def test_views_are_cut_from_the_detectors_quads_and_from_perturbed_truths(monkeypatch):
    photos = [_photo(s) for s in range(3)]
    monkeypatch.setattr(train_refiner, "CropPool", lambda seed=0: None)
    monkeypatch.setattr(train_refiner, "make_photo", lambda pool, seed: photos[(seed - train_refiner.REFINER_SEED_BASE) % 3])
    cfg = RefinerConfig()
    views, targets, kinds = train_refiner._build_chunk((0, 3, cfg.to_dict()))
    assert views.shape[1:] == (cfg.height, cfg.width) and len(views) == len(targets) == len(kinds)
    assert (kinds == 1).sum() == 3 and (kinds == 0).sum() >= 2  # one perturbed truth per formula, found ones too
    # each target is the truth: mapped back, it lands on the photo's quad
    assert targets.shape[1] == 8 and np.isfinite(targets).all()
    assert ((targets > -0.5) & (targets < 1.5)).all()


def test_training_resumes_from_its_checkpoint_and_exports_loadable_weights(tmp_path):
    cfg = RefinerConfig()
    rng = np.random.default_rng(0)
    run = tmp_path / "run"
    run.mkdir()
    prior = np.tile(prior_corners(cfg, 5.0).reshape(1, 8), (16, 1))
    np.savez(run / "samples.npz", views=rng.integers(0, 255, (16, cfg.height, cfg.width), dtype=np.uint8),
             targets=(prior + rng.normal(0, 0.01, prior.shape)).astype(np.float32), kinds=np.ones(16, np.uint8),
             photos=4)
    out = tmp_path / "detector"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"size": 256, "threshold": 0.6}))
    common = ["--run", str(run), "--batch", "4", "--threads", "1", "--ckpt-every", "1", "--out", str(out)]
    train_refiner.main(common + ["--steps", "2", "--no-export"])
    assert torch.load(run / "last.pt", weights_only=False)["step"] == 2
    train_refiner.main(common + ["--steps", "4"])
    config = json.loads((out / "config.json").read_text())
    assert config["threshold"] == 0.6 and config["refiner"]["trained_steps"] == 4  # the detector's own keys kept
    model, loaded_cfg = load_refiner(out, device="cpu")
    assert isinstance(model, QuadRefiner) and loaded_cfg == cfg
    assert model(torch.rand(2, 1, cfg.height, cfg.width)).shape == (2, 8)


@pytest.mark.parametrize("shape", [(300, 500), (300, 500, 3)])
def test_refining_takes_grey_and_colour_images(shape):
    cfg = RefinerConfig(iterations=1)
    image = np.full(shape, 230, np.uint8)
    cv2.rectangle(image, (150, 95), (400, 130), 0, -1)
    (out,) = refine_quads(QuadRefiner(cfg).eval(), cfg, [image], [[QUAD]])
    assert out[0].shape == (4, 2) and np.isfinite(out[0]).all()
