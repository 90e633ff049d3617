"""Loading weights and running detect → rectify → recognise, batched, on CPU or CUDA.

A model folder holds ``config.json`` and either ``weights.pt`` (a state dict for the
architecture named by the folder's kind) or ``model.ts`` (TorchScript: for a detector a module
mapping (B,3,S,S) in [0,1] to (B,2,S/2,S/2) logits; for a recognizer the same interface as
:class:`pipeline.ml.recognizer.Recognizer` is not scriptable, so recognizers are uploaded as
weights + config). The committed defaults live in ``pipeline/weights/<kind>/``.
"""
from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from . import calibration
from .detector import DetectorConfig, Region, TinyUNet, detect_batch, quad_mask, rectify, widen_quad
from .orienter import Orienter, OrienterConfig, landscape, roll_probabilities, unsure_which_way_up
from .recognizer import (
    INFERENCE_WIDTH_STEP,
    Recognizer,
    RecognizerConfig,
    batch_crops,
    fp16_weight_linear_available,
    padded_width,
    prepare_crop,
)
from .refiner import QuadRefiner, RefinerConfig, refine_quads

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


PRECISIONS = ("auto", "float32", "bfloat16")
DECODER_WEIGHTS = ("auto", "float32", "float16")
WIDTH_RATIO = float(os.environ.get("MATHSET_WIDTH_RATIO", "1.3"))  # read_crops' batches: widest / narrowest


def _wide(crop: np.ndarray, max_width: int) -> np.ndarray:
    h, w = crop.shape
    return cv2.resize(crop, (min(max_width, max(8, round(w * 1.2))), h), interpolation=cv2.INTER_LINEAR)


def _trim(crop: np.ndarray, max_width: int) -> np.ndarray:
    h, w = crop.shape
    m = max(1, round(h / 32))
    if h <= 4 * m or w <= 4 * m:
        return crop
    inner = crop[m:h - m, m:w - m]
    return cv2.resize(inner, (min(max_width, max(8, round(inner.shape[1] * h / inner.shape[0]))), h),
                      interpolation=cv2.INTER_AREA)


# Test-time views of a prepared crop (float, ink = 1, the model's height), for read_crops' ``views``:
# "wide" stretches it 1.2x across, "trim" takes 1/32 of its height off every side and scales the
# rest back up. Picked on the CROHME 2013 validation inks among stretches (0.85-1.35x), 2 px bolder
# or thinner strokes, a 10% paper margin and trims (pipeline/RESULTS.md, "test-time views" round).
VIEWS = {"wide": _wide, "trim": _trim}
TTA_VIEWS = ("wide", "trim")  # what ``--tta`` reads besides the crop itself


@functools.cache
def cpu_has_amx_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX tiles), read from /proc/cpuinfo.

    Without AMX, bfloat16 convolutions are emulated and slower than float32, so "auto" precision
    only turns bfloat16 on where this says so.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(line.startswith("flags") and " amx_bf16" in line for line in text.splitlines())


def encoder_uses_bf16(precision: str | None, device: str) -> bool:
    """Resolve a recognizer encoder precision ("auto", "float32", "bfloat16") for a device.

    ``None`` reads ``MATHSET_ENCODER_PRECISION`` (default "auto": bfloat16 on a CPU with AMX,
    float32 elsewhere).
    """
    precision = precision or os.environ.get("MATHSET_ENCODER_PRECISION", "auto")
    if precision not in PRECISIONS:
        raise ValueError(f"encoder precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        return device == "cpu" and cpu_has_amx_bf16()
    return precision == "bfloat16"


def float_state(source) -> dict:
    """A state dict (a path or file object) read on the CPU, float16 tensors widened to float32."""
    state = torch.load(source, map_location="cpu", weights_only=True)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def build_fitting(factory, state: dict):
    """``factory()`` with ``state`` loaded, its parameters' names and shapes checked first on the
    meta device, which allocates nothing.

    An uploaded config sizes the network: ``d_model`` 100,000 would allocate hundreds of GB before
    ``load_state_dict`` found that the weights (at most the upload limit) do not fit it. Checked
    first, a network is only built as big as the weights given for it."""
    with torch.device("meta"):
        needed = {k: tuple(v.shape) for k, v in factory().state_dict().items()}
    given = {k: tuple(v.shape) for k, v in state.items()}
    missing, unexpected = sorted(set(needed) - set(given)), sorted(set(given) - set(needed))
    if missing or unexpected:
        raise ValueError(f"the weights do not fit the config's network: missing keys {missing[:5]}, unexpected keys "
                         f"{unexpected[:5]}")
    for key, shape in needed.items():
        if given[key] != shape:
            raise ValueError(f"size mismatch for {key}: the weights hold {list(given[key])}, the config's network "
                             f"needs {list(shape)}")
    model = factory()
    model.load_state_dict(state)
    return model


def _load_state(folder: Path) -> dict:
    return float_state(folder / "weights.pt")


# the small networks kept beside a detector's weights, by their key in its config.json
SIDE_MODELS = {"refiner": (QuadRefiner, RefinerConfig), "orienter": (Orienter, OrienterConfig)}


def side_model(key: str, raw: dict, source):
    """(model, config) of the side model ``key`` built from its settings ``raw``, weights read from
    ``source`` (a path or file object); raises when they do not fit."""
    net, settings = SIDE_MODELS[key]
    cfg = settings.from_dict(raw)
    return build_fitting(lambda: net(cfg), float_state(source)), cfg


def load_detector(folder: Path | str | None = None, device: str | None = None):
    """(model, config) from a folder (default: the committed weights)."""
    folder = Path(folder or WEIGHTS_DIR / "detector")
    raw = json.loads((folder / "config.json").read_text())
    cfg = DetectorConfig(size=raw.get("size", 256), channels=tuple(raw.get("channels", (12, 24, 48, 64))),
                         threshold=raw.get("threshold", 0.5), min_area=raw.get("min_area", 0.0008),
                         refine_px=raw.get("refine_px", DetectorConfig.refine_px),
                         split_min_frac=raw.get("split_min_frac", 0.0), crop_margin=raw.get("crop_margin", 0.0))
    device = device or default_device()
    if (folder / "model.ts").exists():
        model = torch.jit.load(str(folder / "model.ts"), map_location=device)
    else:
        model = TinyUNet(cfg)
        model.load_state_dict(_load_state(folder))
    return model.to(device).eval(), cfg


def load_refiner(folder: Path | str | None = None, device: str | None = None):
    """(model, config) of the corner refiner kept in a detector folder, or None where it has none."""
    folder = Path(folder or WEIGHTS_DIR / "detector")
    raw = json.loads((folder / "config.json").read_text()).get("refiner")
    if not raw or not (folder / "refiner.pt").exists():
        return None
    model, cfg = side_model("refiner", raw, folder / "refiner.pt")
    return model.to(device or default_device()).eval(), cfg


def load_orienter(folder: Path | str | None = None, device: str | None = None) -> Orienter | None:
    """The orienter kept in a detector folder (``orienter.pt``, settings under ``"orienter"`` in its
    ``config.json``), or None where it has none."""
    folder = Path(folder or WEIGHTS_DIR / "detector")
    raw = json.loads((folder / "config.json").read_text()).get("orienter")
    if not raw or not (folder / "orienter.pt").exists():
        return None
    model, _ = side_model("orienter", raw, folder / "orienter.pt")
    return model.to(device or default_device()).eval()


def decoder_uses_fp16(weights: str | None, device: str) -> bool:
    """Resolve the recognizer decoder's step weights ("auto", "float32", "float16") for a device.

    ``None`` reads ``MATHSET_DECODER_WEIGHTS`` (default "auto": float16 on a CPU whose torch has
    FBGEMM's float16-weight kernel, float32 elsewhere; on CUDA the steps are not weight-bound).
    """
    weights = weights or os.environ.get("MATHSET_DECODER_WEIGHTS", "auto")
    if weights not in DECODER_WEIGHTS:
        raise ValueError(f"decoder weights must be one of {', '.join(DECODER_WEIGHTS)}, not {weights!r}")
    if weights == "auto":
        return device == "cpu" and fp16_weight_linear_available()
    return weights == "float16" and device == "cpu"


def load_recognizer(folder: Path | str | None = None, device: str | None = None,
                    precision: str | None = None, decoder_weights: str | None = None) -> Recognizer:
    """The recognizer from a folder (default: the committed weights), set up for inference: its
    encoder in ``precision`` (:func:`encoder_uses_bf16`), its decoding steps' weights in
    ``decoder_weights`` (:func:`decoder_uses_fp16`)."""
    folder = Path(folder or WEIGHTS_DIR / "recognizer")
    raw = json.loads((folder / "config.json").read_text())
    fields = RecognizerConfig.__dataclass_fields__
    cfg = RecognizerConfig(**{k: v for k, v in raw.items() if k in fields})
    model = Recognizer(cfg)
    model.load_state_dict(_load_state(folder))
    model.calibration = calibration.parse(raw.get("calibration"))
    device = device or default_device()
    bf16 = encoder_uses_bf16(precision, device)
    model = model.to(device).eval().set_encoder_precision(bf16=bf16, channels_last=device == "cpu")
    return model.set_decoder_weights(fp16=decoder_uses_fp16(decoder_weights, device))


@dataclass
class Reading:
    """A recognised crop: normalised tokens, per-token confidences and the sequence confidence:
    the probability that the whole reading is exactly right (:mod:`pipeline.ml.calibration`)."""

    tokens: list[str]
    token_confidences: list[float]
    confidence: float
    turned: bool = False  # read from the crop turned by 180° (it read better that way up)

    @property
    def latex(self) -> str:
        return " ".join(self.tokens)


class FormulaReader:
    """Detector + rectifier + recognizer, loaded once (one per worker process)."""

    def __init__(self, detector_dir=None, recognizer_dir=None, device: str | None = None, batch_size: int = 16,
                 beam_width: int = 1, orient: bool = True, crop_margin: float | None = None,
                 refine_corners: bool = True, precision: str | None = None, views: tuple[str, ...] | None = None):
        self.device = device or default_device()
        views = configured_views() if views is None else tuple(views)
        check_views(views, beam_width)
        self.detector, self.det_cfg = load_detector(detector_dir, self.device)
        # the corner refiner kept beside the detector's weights (none: the detector's quads as they are)
        self.refiner = load_refiner(detector_dir, self.device) if refine_corners else None
        self.recognizer = load_recognizer(recognizer_dir, self.device, precision)
        # the orienter kept beside the detector's weights says which way up each crop is; a
        # detector folder without one leaves the choice to the recognizer (both ways up, below)
        self.orienter = load_orienter(detector_dir, self.device) if orient else None
        self.batch_size = batch_size
        self.beam_width = beam_width  # 1: greedy; wider costs about that many times the decoder time
        # test-time views read with each crop (read_crops): each costs about one more reading
        self.views = tuple(views)
        # read() puts each detected formula's top-left corner first (the detector's own corner
        # order is a coin toss on rotated photos): by the orienter where the detector folder has
        # one, else by the recognizer reading both ways up and probing 8 tokens (101 photo crops
        # took 3.0 s instead of 1.6 s on 2 CPU threads; it cannot mend a quad begun on a short side)
        self.orient = orient
        # paper around each region before it is read: the detector's own setting unless given
        self.crop_margin = self.det_cfg.crop_margin if crop_margin is None else crop_margin

    @property
    def reading(self) -> dict:
        """How this reader reads: stored with each prediction (``Prediction.reading``)."""
        return {"beam_width": self.beam_width, "views": list(self.views), "refine_corners": self.refiner is not None,
                "orient": self.orient, "orienter": bool(self.orient and self.orienter is not None),
                "encoder": "bfloat16" if self.recognizer.encoder_bf16 else "float32"}

    def detect(self, images: list[np.ndarray], *, with_masks: bool = True) -> list[list[Region]]:
        refining = self.refiner is not None
        out: list[list[Region]] = []
        for i in range(0, len(images), self.batch_size):
            # a refined region's mask is drawn from its refined quad below: the detector's own
            # image-sized masks would be built only to be thrown away
            out += detect_batch(self.detector, self.det_cfg, images[i:i + self.batch_size],
                                with_masks=with_masks and not refining, device=self.device)
        if refining:
            model, cfg = self.refiner
            quads = refine_quads(model, cfg, images, [[r.quad for r in regions] for regions in out],
                                 device=self.device)
            # a refined region's mask is its refined quad filled: on 170 formulas of validation photos
            # (seeds 20,000,000+) that overlaps the true mask by IoU 0.870, the detector's own
            # thresholded mask by 0.815 (its map is blurrier than the corners the refiner finds)
            out = [[replace(r, quad=q, mask=quad_mask(q, img.shape[:2]) if with_masks else None)
                    for r, q in zip(regions, qs, strict=True)]
                   for regions, qs, img in zip(out, quads, images, strict=True)]
        return out

    def orient_regions(self, images: list[np.ndarray], detections: list[list[Region]]) -> list[list[Region]]:
        """The regions with each quad rolled so that its first corner is the formula's top-left, as
        the orienter sees their crops (as they are where this reader has no orienter).

        Where the orienter is unsure whether a formula lying across is upright or turned
        (:data:`ORIENT_ASK_RECOGNIZER_BELOW`), the recognizer reads both ways up and decides.
        """
        if self.orienter is None:
            return detections
        crops = [rectify(img, widen_quad(r.quad, self.crop_margin))
                 for img, regions in zip(images, detections, strict=True) for r in regions]
        probs, base = roll_probabilities(self.orienter, crops, device=self.device,
                                         batch_size=max(self.batch_size, 64))
        rolls = (probs.argmax(1) + base) % 4
        unsure = np.flatnonzero(unsure_which_way_up(probs, ORIENT_ASK_RECOGNIZER_BELOW)) if len(probs) else []
        if len(unsure):
            cfg = self.recognizer.cfg
            laid = [prepare_crop(landscape(crops[i])[0], cfg.height, cfg.max_width) for i in unsure]
            for idx in width_batches([a.shape[1] for a in laid], self.batch_size):
                upright = inference_batch([laid[j] for j in idx], self.recognizer).to(self.device)
                turned = inference_batch([np.ascontiguousarray(laid[j][::-1, ::-1]) for j in idx], self.recognizer).to(self.device)
                for j, flip in zip(idx, self.recognizer.turned_reads_better(upright, turned).tolist(), strict=True):
                    rolls[unsure[j]] = (base[unsure[j]] + 2 * int(flip)) % 4
        out, i = [], 0
        for regions in detections:
            row = []
            for r in regions:
                k = int(rolls[i])
                i += 1
                row.append(replace(r, quad=np.roll(r.quad, k, axis=0)) if k else r)
            out.append(row)
        return out

    def recognize(self, crops: list[np.ndarray], *, orient: bool = False) -> list[Reading]:
        """Read each crop; with ``orient``, a crop that reads better turned by 180° is read that way."""
        return read_crops(self.recognizer, crops, device=self.device, batch_size=self.batch_size,
                          beam_width=self.beam_width, orient=orient, views=self.views)

    def read(self, images: list[np.ndarray], *, with_masks: bool = False) -> list[dict]:
        """Full pipeline per image: regions (4 points, score, LaTeX, confidences) and timings."""
        t0 = time.perf_counter()
        detections = self.detect(images, with_masks=with_masks)
        by_recognizer = self.orient and self.orienter is None
        if self.orient and not by_recognizer:
            detections = self.orient_regions(images, detections)
        crops, owners = [], []
        for k, (img, regions) in enumerate(zip(images, detections, strict=True)):
            for r in regions:
                crops.append(rectify(img, widen_quad(r.quad, self.crop_margin)))
                owners.append((k, r))
        readings = self.recognize(crops, orient=by_recognizer) if crops else []
        out = [{"regions": []} for _ in images]
        for (k, region), reading in zip(owners, readings, strict=True):
            if reading.turned:  # the formula's top-left corner is the one the detector put third
                region = replace(region, quad=np.roll(region.quad, 2, axis=0))
            entry = region.to_dict()
            entry.update(latex=reading.latex, latex_confidence=round(reading.confidence, 4),
                         token_confidences=[round(c, 4) for c in reading.token_confidences])
            if with_masks and region.mask is not None:
                entry["mask"] = region.mask
            out[k]["regions"].append(entry)
        elapsed = time.perf_counter() - t0
        for o in out:
            o["seconds"] = elapsed / max(len(images), 1)
        return out


# the orienter's share for the likelier of upright and turned below which the recognizer decides,
# chosen on validation photos (seeds 20,000,000+, held-out crops; 300 photos, 540 formulas, as
# `bench/prelabel.py --seed-base 20000000` reads them). Corners in order / exact / BLEU-4: the
# recognizer alone 72.6% / 22.6% / 0.300; threshold 0.8 88.3% / 22.2% / 0.320; 0.9 89.6% / 22.8% /
# 0.322; 0.95 89.0% / 23.0% / 0.323; the recognizer on every crop lying across 76.2% / 23.9% / 0.305
ORIENT_ASK_RECOGNIZER_BELOW = 0.9


def width_batches(widths: list[int], batch_size: int, *, max_ratio: float = WIDTH_RATIO) -> list[list[int]]:
    """Indices of ``widths`` in batches of similar width: sorted, at most ``batch_size`` each, and a
    new batch begun where a width exceeds ``max_ratio`` times the batch's narrowest.

    A batch is padded to its widest crop, and both the encoder and every decoding step pay for
    the padding: 16 crops in plain width order were 45% padding on the throughput benchmark's
    photos, 7% split at 1.3x.
    """
    order = sorted(range(len(widths)), key=widths.__getitem__)
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and widths[i] <= widths[batches[-1][0]] * max_ratio:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def configured_views() -> tuple[str, ...]:
    """The test-time views named by ``MATHSET_RECOGNIZER_VIEWS`` (comma-separated, default none).

    Read by a :class:`FormulaReader` built without ``views``, so pre-labeling workers can trade
    about 3x the recognizer's time (``wide,trim``) for better readings.
    """
    return tuple(v.strip() for v in os.environ.get("MATHSET_RECOGNIZER_VIEWS", "").split(",") if v.strip())


def check_views(views, beam_width: int = 1) -> None:
    """Raise ValueError naming a test-time view that :data:`VIEWS` does not have, or views asked
    for with beam search (they are read greedily)."""
    unknown = [v for v in views if v not in VIEWS]
    if unknown:
        raise ValueError(f"unknown test-time view {unknown[0]!r}: choose from {', '.join(VIEWS)}"
                         " (MATHSET_RECOGNIZER_VIEWS, --tta)")
    if views and beam_width > 1:
        raise ValueError("test-time views are read greedily: they cannot be combined with a beam width over 1 "
                         "(--beam)")


def inference_batch(arrays: list[np.ndarray], recognizer: Recognizer) -> torch.Tensor:
    """:func:`batch_crops` at inference. With a bfloat16 encoder, widths in steps of
    ``INFERENCE_WIDTH_STEP`` columns, so that oneDNN reuses its kernels across batches; float32 keeps
    8-column steps: its kernels gain less from it, and its readings, the ones the results tables
    report, stay exactly as they were (64-column steps move them: 2016 exact 34.09% -> 33.83%)."""
    step = INFERENCE_WIDTH_STEP if recognizer.encoder_bf16 else 8
    return batch_crops(arrays, step=step, max_width=recognizer.cfg.max_width)


def read_crops(recognizer: Recognizer, crops: list[np.ndarray], *, device: str = "cpu", batch_size: int = 16,
               beam_width: int = 1, orient: bool = False, views: tuple[str, ...] = ()) -> list[Reading]:
    """Read formula crops in width-sorted batches (greedy, or beam search of ``beam_width``);
    with ``orient``, a crop that reads better turned by 180° is read that way.

    With ``views`` (names in :data:`VIEWS`), each crop is read together with those views of it,
    greedily, by :meth:`Recognizer.greedy_views` (test-time augmentation; not with beam search).
    """
    check_views(views, beam_width)
    cfg = recognizer.cfg
    mode = calibration.mode_key(beam_width, views)
    prepared = [prepare_crop(c, cfg.height, cfg.max_width) for c in crops]
    results: list[Reading | None] = [None] * len(prepared)
    for idx in width_batches([p.shape[1] for p in prepared], batch_size):
        x = inference_batch([prepared[j] for j in idx], recognizer).to(device)
        # a formula holds at most ~1 token per 2 px of (64 px high) width (99% of the CROHME
        # test crops hold under 1 per 3 px; squeezed im2markup crops reach max_len first): bounding
        # the search by the width stops an unsure model from looping to max_len on short crops
        limit = min(cfg.max_len, padded_width(max(prepared[j].shape[1] for j in idx)) // 2 + 10)
        turned = [False] * len(idx)
        if orient:
            upside = [np.ascontiguousarray(prepared[j][::-1, ::-1]) for j in idx]
            x_turned = inference_batch(upside, recognizer).to(device)
            if views:
                turned = recognizer.turned_reads_better(x, x_turned).tolist()
            elif beam_width <= 1:
                readings, flips = recognizer.greedy_either_way(x, x_turned, max_len=limit)
                turned = flips.tolist()
            else:
                turned = recognizer.turned_reads_better(x, x_turned).tolist()
                x = inference_batch([u if t else prepared[j] for j, u, t in zip(idx, upside, turned, strict=True)], recognizer)
                readings = recognizer.beam(x.to(device), width=beam_width, max_len=limit)
        elif not views:
            readings = recognizer.beam(x, width=beam_width, max_len=limit)
        if views:
            chosen = [np.ascontiguousarray(prepared[j][::-1, ::-1]) if t else prepared[j]
                      for j, t in zip(idx, turned, strict=True)]
            pictures = chosen + [VIEWS[v](c, cfg.max_width) for v in views for c in chosen]
            readings = recognizer.greedy_views(inference_batch(pictures, recognizer).to(device), 1 + len(views), max_len=limit)
        for j, (toks, confs), t in zip(idx, readings, turned, strict=True):
            results[j] = Reading(tokens=toks, token_confidences=confs,
                                 confidence=calibration.confidence(confs, recognizer.calibration, mode),
                                 turned=bool(t))
    return results  # type: ignore[return-value]


def calibrate(recognizer: Recognizer, samples: list[tuple[np.ndarray, list[str]]], *, device: str = "cpu",
              batch_size: int = 64, beam_width: int = 1, views: tuple[str, ...] = ()
              ) -> tuple[calibration.Platt, list[Reading]]:
    """Fit P(exact) on the sequence log-probability for one way of reading, on (crop, truth
    tokens) samples read that way (the validation inks: never a test set). Returns the fit and the
    readings; ValueError when the readings are all exact or all wrong."""
    readings = read_crops(recognizer, [crop for crop, _ in samples], device=device, batch_size=batch_size,
                          beam_width=beam_width, views=views)
    fit = calibration.fit_platt([calibration.sequence_log_prob(r.token_confidences) for r in readings],
                                [r.tokens == truth for r, (_, truth) in zip(readings, samples, strict=True)])
    return fit, readings
