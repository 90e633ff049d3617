"""Formula detector (tiny U-Net + OpenCV geometry) and rectifier.

The network sees the photo resized to ``size`` x ``size`` and predicts two maps at half
resolution: the formula mask, and the mask of each formula's *upper half*. Post-processing
(no learning): threshold the formula map, split it into connected components, fit a rotated
rectangle (``cv2.minAreaRect``) or, when the contour is clearly not rectangular, a 4-point
polygon approximation, and choose which edge is the formula's top by where the upper-half map
lies. So a formula upside down or at 90 degrees still gets its corners in reading order
(top-left, top-right, bottom-right, bottom-left), which the rectifier needs to produce an
upright crop. Confidence = mean formula probability inside the component.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch import nn


@dataclass
class DetectorConfig:
    """Hyper-parameters saved with the weights (``config.json``)."""

    size: int = 256
    channels: tuple[int, ...] = (12, 24, 48, 64)
    threshold: float = 0.5
    min_area: float = 0.0008   # of the image area, smaller components are noise
    # second, zoomed pass: a region whose short side is under this many pixels in the network's
    # input (a text line on an A4 page is ~4) is detected again in a window around it (0: never)
    refine_px: float = 12.0

    def to_dict(self) -> dict:
        return {"size": self.size, "channels": list(self.channels), "threshold": self.threshold,
                "min_area": self.min_area, "refine_px": self.refine_px}


def _conv(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyUNet(nn.Module):
    """A 4-level U-Net; output 2 logit maps at half the input resolution."""

    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        c = list(cfg.channels)
        self.stem = nn.Sequential(nn.Conv2d(3, c[0], 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c[0]),
                                  nn.ReLU(inplace=True))
        self.downs = nn.ModuleList([_conv(c[0], c[0])] + [_conv(c[i - 1], c[i]) for i in range(1, len(c))])
        self.ups = nn.ModuleList([_conv(c[i] + c[i - 1], c[i - 1]) for i in range(len(c) - 1, 0, -1)])
        self.head = nn.Conv2d(c[0], 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = []
        for i, down in enumerate(self.downs):
            if i:
                x = nn.functional.max_pool2d(x, 2)
            x = down(x)
            skips.append(x)
        for up, skip in zip(self.ups, reversed(skips[:-1]), strict=True):
            x = nn.functional.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = up(torch.cat([x, skip], 1))
        return self.head(x)


def prepare_photo(rgb: np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 → (3, size, size) float32 in [0, 1]."""
    if rgb.ndim == 2:
        rgb = cv2.cvtColor(rgb, cv2.COLOR_GRAY2RGB)
    img = cv2.resize(rgb[..., :3], (size, size), interpolation=cv2.INTER_AREA)
    return img.transpose(2, 0, 1).astype(np.float32) / 255.0


@dataclass
class Region:
    """One detected formula: 4 corners in reading order (image pixels), score, and its mask."""

    quad: np.ndarray                 # (4, 2) float32: top-left, top-right, bottom-right, bottom-left
    score: float
    mask: np.ndarray | None = field(default=None, repr=False)  # H x W bool in image pixels

    def to_dict(self) -> dict:
        return {"points": [[round(float(x), 1), round(float(y), 1)] for x, y in self.quad],
                "score": round(self.score, 4)}


def _order_by_top(box: np.ndarray, top_prob: np.ndarray) -> np.ndarray:
    """Rotate the 4 corners so that edge 0-1 is the formula's top (where the upper-half map is)."""
    centre = box.mean(0)
    best, best_score = box, -1.0
    h, w = top_prob.shape
    for k in range(4):
        cand = np.roll(box, -k, axis=0)
        mid_top = (cand[0] + cand[1]) / 2
        # sample the upper-half map halfway between the centre and the top edge's midpoint
        p = centre + 0.5 * (mid_top - centre)
        x, y = int(np.clip(p[0], 0, w - 1)), int(np.clip(p[1], 0, h - 1))
        q = centre + 0.5 * (centre - mid_top)  # and the opposite side, which must be low
        x2, y2 = int(np.clip(q[0], 0, w - 1)), int(np.clip(q[1], 0, h - 1))
        score = float(top_prob[y, x]) - float(top_prob[y2, x2])
        if score > best_score:
            best, best_score = cand, score
    return best


def _to_quad(contour: np.ndarray) -> np.ndarray:
    rect = cv2.minAreaRect(contour)
    box = cv2.boxPoints(rect).astype(np.float32)
    approx = cv2.approxPolyDP(contour, 0.04 * cv2.arcLength(contour, True), True)
    if len(approx) == 4 and cv2.isContourConvex(approx):
        quad = approx[:, 0, :].astype(np.float32)
        # keep the perspective quad only when it covers the component at least as well as the box
        if cv2.contourArea(quad) >= 0.9 * cv2.contourArea(box):
            box = quad
    # clockwise order in image coordinates (y down)
    c = box.mean(0)
    ang = np.arctan2(box[:, 1] - c[1], box[:, 0] - c[0])
    return box[np.argsort(ang)]


def postprocess(prob: np.ndarray, top: np.ndarray, image_shape: tuple[int, int], cfg: DetectorConfig,
                with_masks: bool = True) -> list[Region]:
    """Probability maps (at network resolution) → regions in image pixels."""
    h_img, w_img = image_shape
    mh, mw = prob.shape
    binary = (prob > cfg.threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    regions = []
    sx, sy = w_img / mw, h_img / mh
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < cfg.min_area * mh * mw:
            continue
        comp = (labels == i).astype(np.uint8)
        contours, _ = cv2.findContours(comp, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        contour = max(contours, key=cv2.contourArea)
        quad = _order_by_top(_to_quad(contour), top)
        # +0.5: a mask pixel covers [i, i+1) at network resolution
        quad_img = ((quad + 0.5) * [sx, sy]).astype(np.float32)
        quad_img[:, 0] = quad_img[:, 0].clip(0, w_img - 1)
        quad_img[:, 1] = quad_img[:, 1].clip(0, h_img - 1)
        mask = None
        if with_masks:
            mask = cv2.resize(comp, (w_img, h_img), interpolation=cv2.INTER_NEAREST).astype(bool)
        regions.append(Region(quad=quad_img, score=float(prob[comp.astype(bool)].mean()), mask=mask))
    regions.sort(key=lambda r: (r.quad[:, 1].min(), r.quad[:, 0].min()))
    return regions


def _maps(model, cfg: DetectorConfig, images: list[np.ndarray], device: str) -> np.ndarray:
    x = torch.from_numpy(np.stack([prepare_photo(im, cfg.size) for im in images])).to(device)
    return torch.sigmoid(model(x)).cpu().numpy()


def _window(quad: np.ndarray, shape: tuple[int, int], margin: float = 0.25) -> tuple[int, int, int, int]:
    """A square window (x0, y0, x1, y1) around a quad's box with ``margin`` of its long side each way."""
    h_img, w_img = shape
    x0, y0 = quad.min(0)
    x1, y1 = quad.max(0)
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin) + 16
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    wx, wy = min(side, w_img), min(side, h_img)
    left = int(np.clip(cx - wx / 2, 0, w_img - wx))
    top = int(np.clip(cy - wy / 2, 0, h_img - wy))
    return left, top, int(left + wx), int(top + wy)


def _quad_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter, _ = cv2.intersectConvexConvex(a.astype(np.float32), b.astype(np.float32))
    union = cv2.contourArea(a.astype(np.float32)) + cv2.contourArea(b.astype(np.float32)) - inter
    return float(inter / union) if union > 0 else 0.0


def _refine(model, cfg: DetectorConfig, images: list[np.ndarray], found: list[list[Region]], with_masks: bool,
            device: str) -> list[list[Region]]:
    """Coarse to fine: detect small regions again in a zoomed window, so that their corners are
    placed at the window's resolution, not the whole image's (an A4 page squeezed to 256 px
    leaves a formula 4 px high)."""
    jobs = []
    for k, (img, regions) in enumerate(zip(images, found, strict=True)):
        h, w = img.shape[:2]
        for i, r in enumerate(regions):
            q = r.quad * [cfg.size / w, cfg.size / h]  # in the network's input pixels
            short = min(np.linalg.norm(q[0] - q[3]), np.linalg.norm(q[1] - q[2]), np.linalg.norm(q[0] - q[1]))
            if short < cfg.refine_px:
                jobs.append((k, i, _window(r.quad, (h, w))))
    if not jobs:
        return found
    crops = [images[k][y0:y1, x0:x1] for k, _, (x0, y0, x1, y1) in jobs]
    maps = np.concatenate([_maps(model, cfg, crops[j:j + 16], device) for j in range(0, len(crops), 16)])
    out = [list(r) for r in found]
    for (k, i, (x0, y0, x1, y1)), m, crop in zip(jobs, maps, crops, strict=True):
        cands = postprocess(m[0], m[1], crop.shape[:2], cfg, with_masks)
        old = found[k][i]
        centre = old.quad.mean(0) - [x0, y0]
        # the window is centred on the old region: the refined one is the candidate nearest its centre
        inside = [c for c in cands if cv2.pointPolygonTest(c.quad.reshape(-1, 1, 2), tuple(map(float, centre)), False) >= 0]
        if not inside:
            continue
        new = max(inside, key=lambda c: cv2.contourArea(c.quad))
        mask = None
        if with_masks and new.mask is not None:
            mask = np.zeros(images[k].shape[:2], bool)
            mask[y0:y1, x0:x1] = new.mask
        out[k][i] = Region(quad=(new.quad + np.float32([x0, y0])).astype(np.float32), score=new.score, mask=mask)
    # two fragments of one formula refine to the same region: keep one
    for k, regions in enumerate(out):
        kept: list[Region] = []
        for r in sorted(regions, key=lambda r: -r.score):
            if all(_quad_iou(r.quad, q.quad) < 0.5 for q in kept):
                kept.append(r)
        kept.sort(key=lambda r: (r.quad[:, 1].min(), r.quad[:, 0].min()))
        out[k] = kept
    return out


@torch.no_grad()
def detect_batch(model: TinyUNet, cfg: DetectorConfig, images: list[np.ndarray], *, with_masks: bool = True,
                 device: str = "cpu", refine: bool = True) -> list[list[Region]]:
    """Detect formulas in a batch of RGB uint8 images (any sizes); small ones again, zoomed in."""
    model.eval()
    maps = _maps(model, cfg, images, device)
    found = [postprocess(m[0], m[1], im.shape[:2], cfg, with_masks) for m, im in zip(maps, images, strict=True)]
    if refine and cfg.refine_px > 0:
        found = _refine(model, cfg, images, found, with_masks, device)
    return found


def rectify(image: np.ndarray, quad: np.ndarray, *, height: int | None = None) -> np.ndarray:
    """Warp the quadrilateral (TL, TR, BR, BL) of ``image`` to an upright rectangle.

    The output keeps the quad's own proportions (mean of opposite edge lengths), optionally
    scaled to ``height`` pixels. Resampling is OpenCV's (bilinear); paper white fills outside.
    """
    q = np.asarray(quad, np.float32).reshape(4, 2)
    w = (np.linalg.norm(q[1] - q[0]) + np.linalg.norm(q[2] - q[3])) / 2
    h = (np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])) / 2
    w, h = max(int(round(w)), 2), max(int(round(h)), 2)
    if height:
        w, h = max(int(round(w * height / h)), 2), height
    dst = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
    m = cv2.getPerspectiveTransform(q, dst)
    border = (255,) * (image.shape[2] if image.ndim == 3 else 1)
    return cv2.warpPerspective(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=border)


def top_half_mask(quad: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Training target: the half of the quad between its top edge and its midline."""
    q = np.asarray(quad, np.float32)
    mid_l, mid_r = (q[0] + q[3]) / 2, (q[1] + q[2]) / 2
    out = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(out, np.round(np.stack([q[0], q[1], mid_r, mid_l])).astype(np.int32), 1)
    return out
