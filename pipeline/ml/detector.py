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
    threshold: float = 0.6    # tuned on validation seeds 20,000,000+ (0.5-0.8 tried)
    min_area: float = 0.0008   # of the image area, smaller components are noise
    # second, zoomed pass: a region whose short side is under this many pixels in the network's
    # input (a text line on an A4 page is ~4) is detected again in a window around it (0: never)
    refine_px: float = 12.0
    # two formulas that touch in the mask: a component that falls apart into pieces of at least
    # this fraction of it at a higher threshold is split between them (0: never)
    split_min_frac: float = 0.0
    # reading a region: paper added on every side before it is rectified, as a fraction of its
    # height. These weights draw the ink's own box; with 0.12 the pre-labels read as well as
    # with 0 (0, 0.07, 0.12, 0.2 tried on validation photos: exact match 18.2/19.1/18.5/19.3%,
    # within one edit 28.2/26.8/26.2/26.5%) and 18% faster: the crop squeezed to the
    # recognizer's 64 px is narrower. Weights whose config.json lacks it read with 0.
    crop_margin: float = 0.12

    def to_dict(self) -> dict:
        return {"size": self.size, "channels": list(self.channels), "threshold": self.threshold,
                "min_area": self.min_area, "refine_px": self.refine_px, "split_min_frac": self.split_min_frac,
                "crop_margin": self.crop_margin}


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


def _half_means(cand: np.ndarray, top_prob: np.ndarray) -> float:
    """Mean upper-half probability in the half of ``cand`` along edge 0-1 minus that in the other half."""
    h, w = top_prob.shape
    mid_r, mid_l = (cand[1] + cand[2]) / 2, (cand[0] + cand[3]) / 2
    means = []
    for half in (np.stack([cand[0], cand[1], mid_r, mid_l]), np.stack([mid_l, mid_r, cand[2], cand[3]])):
        m = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(m, np.round(half).astype(np.int32), 1)
        means.append(float(top_prob[m.astype(bool)].mean()) if m.any() else 0.0)
    return means[0] - means[1]


def _order_by_top(box: np.ndarray, top_prob: np.ndarray) -> np.ndarray:
    """Rotate the 4 corners so that edge 0-1 is the formula's top (where the upper-half map is).

    ``box`` is clockwise in map pixel-index coordinates. A formula is a line of writing, so when
    the box is clearly longer than high only its two long edges can be the top; the upper-half
    map, averaged over each half of the box, picks between the candidates.
    """
    edge = [np.linalg.norm(box[(k + 1) % 4] - box[k]) for k in range(4)]
    long_edges = (edge[0] + edge[2]) >= (edge[1] + edge[3])
    aspect = max(edge[0] + edge[2], edge[1] + edge[3]) / max(min(edge[0] + edge[2], edge[1] + edge[3]), 1e-6)
    ks = [0, 2] if long_edges else [1, 3]
    if aspect < 1.5:
        ks = [0, 1, 2, 3]
    cands = [np.roll(box, -k, axis=0) for k in ks]
    return max(cands, key=lambda c: _half_means(c, top_prob))


def _clockwise(box: np.ndarray) -> np.ndarray:
    """Corners sorted by angle around the centre: clockwise on screen (y down)."""
    c = box.mean(0)
    return box[np.argsort(np.arctan2(box[:, 1] - c[1], box[:, 0] - c[0]))]


def _intersect(p1, e1, p2, e2):
    m = np.array([e1, -e2], np.float64).T
    if abs(np.linalg.det(m)) < 1e-6:
        return None
    t = np.linalg.solve(m, np.asarray(p2, np.float64) - p1)
    return p1 + t[0] * np.asarray(e1, np.float64)


def _fit_sides(pts: np.ndarray, box: np.ndarray, iters: int = 2, trim: float = 0.15) -> np.ndarray:
    """Refine a clockwise box to the quadrilateral whose 4 edges are lines fitted to the outline.

    Each outline point goes to the nearest edge of the current box; the points near the corners
    (rounded by the blur of the map) are left out; the new corners are the intersections of
    neighbouring fitted lines. A perspective-warped formula gets its trapezoid, not the
    rectangle around it. A degenerate fit keeps the box.
    """
    for _ in range(iters):
        dists = []
        for i in range(4):
            a, b = box[i], box[(i + 1) % 4]
            ab = b - a
            t = np.clip(((pts - a) @ ab) / (ab @ ab + 1e-9), 0, 1)
            dists.append(np.linalg.norm(pts - (a + t[:, None] * ab), axis=1))
        side = np.argmin(np.stack(dists, 1), 1)
        lines = []
        for i in range(4):
            a, b = box[i], box[(i + 1) % 4]
            sel = pts[side == i]
            ab = b - a
            t = ((sel - a) @ ab) / (ab @ ab + 1e-9)
            core = sel[(t > trim) & (t < 1 - trim)]
            sel = core if len(core) >= 3 else sel
            if len(sel) >= 3:
                vx, vy, x0, y0 = cv2.fitLine(sel.astype(np.float32), cv2.DIST_L2, 0, 0.01, 0.01).ravel()
                lines.append((np.array([x0, y0], np.float64), np.array([vx, vy], np.float64)))
            else:
                lines.append((a.astype(np.float64), ab.astype(np.float64)))
        corners = [_intersect(*lines[i - 1], *lines[i]) for i in range(4)]
        if any(c is None for c in corners):
            return box
        new = np.array(corners, np.float32)
        if (not cv2.isContourConvex(new.reshape(-1, 1, 2))
                or np.abs(new - box).max() > 0.5 * np.linalg.norm(box[0] - box[2])):
            return box
        box = new
    return box


def _split_touching(prob: np.ndarray, labels: np.ndarray, stats: np.ndarray, cfg: DetectorConfig):
    """Split components that are two formulas touching: raise the threshold inside a component
    until it falls apart into at least two pieces, each ``split_min_frac`` of it or more, and
    give every pixel of the component to its nearest piece (so each part keeps its outline at
    the base threshold). Returns (count, labels, stats) like ``connectedComponentsWithStats``."""
    labels = labels.copy()
    n = len(stats)
    boxes = [tuple(s[:5]) for s in stats]
    for i in range(1, len(stats)):
        x, y, w, h, area = stats[i, :5]
        if area < max(cfg.min_area * prob.size, 8):
            continue
        comp = labels[y:y + h, x:x + w] == i
        p = prob[y:y + h, x:x + w]
        for t in np.linspace(cfg.threshold, 0.98, 8)[1:]:
            k, lab, st, _ = cv2.connectedComponentsWithStats(((p > t) & comp).astype(np.uint8), connectivity=8)
            big = [j for j in range(1, k) if st[j, cv2.CC_STAT_AREA] >= cfg.split_min_frac * area]
            if len(big) < 2:
                continue
            seeds = np.isin(lab, big)
            _, nearest = cv2.distanceTransformWithLabels((~seeds).astype(np.uint8), cv2.DIST_L2, 3,
                                                         labelType=cv2.DIST_LABEL_PIXEL)
            # DIST_LABEL_PIXEL numbers the seed pixels; map those numbers to pieces
            piece_of = np.zeros(nearest.max() + 1, np.int32)
            piece_of[nearest[seeds]] = lab[seeds]
            owner = piece_of[nearest]
            win = labels[y:y + h, x:x + w]
            for j in big[1:]:
                part = comp & (owner == j)
                win[part] = n
                ys, xs = np.nonzero(part)
                boxes.append((x + xs.min(), y + ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1,
                              int(part.sum())))
                n += 1
            first = comp & (win == i)
            ys, xs = np.nonzero(first)
            boxes[i] = (x + xs.min(), y + ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1, int(first.sum()))
            break
    return n, labels, np.array(boxes, np.int64).reshape(-1, 5)


def postprocess(prob: np.ndarray, top: np.ndarray, image_shape: tuple[int, int], cfg: DetectorConfig,
                with_masks: bool = True) -> list[Region]:
    """Probability maps (at network resolution) → regions in image pixels.

    Corners are placed below the map's pixel size: the component's outline is the ``threshold``
    iso-line of its soft map up-sampled 4x (bilinear), and the quad's edges are lines fitted to
    that outline (the map is 128 px wide, so a whole map pixel is 2-4 photo pixels).
    """
    up = 4
    h_img, w_img = image_shape
    mh, mw = prob.shape
    binary = (prob > cfg.threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if cfg.split_min_frac > 0:
        n, labels, stats = _split_touching(prob, labels, stats, cfg)
    regions = []
    sx, sy = w_img / mw, h_img / mh
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < cfg.min_area * mh * mw:
            continue
        comp = (labels == i).astype(np.uint8)
        x, y, w, h = stats[i, :4]
        x0, y0, x1, y1 = max(x - 3, 0), max(y - 3, 0), min(x + w + 3, mw), min(y + h + 3, mh)
        # this component's soft map: its pixels and their surroundings, no other component's
        own = cv2.dilate(comp[y0:y1, x0:x1], np.ones((5, 5), np.uint8))
        own &= (labels[y0:y1, x0:x1] == 0) | (labels[y0:y1, x0:x1] == i)
        big = cv2.resize(prob[y0:y1, x0:x1] * own, ((x1 - x0) * up, (y1 - y0) * up), interpolation=cv2.INTER_LINEAR)
        contours, _ = cv2.findContours((big > cfg.threshold).astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_NONE)
        if not contours:
            continue
        # up-sampled pixel centres → map coordinates in which map pixel j covers [j, j+1)
        pts = ((max(contours, key=cv2.contourArea)[:, 0, :] + 0.5) / up + [x0, y0]).astype(np.float32)
        box = _fit_sides(pts, _clockwise(cv2.boxPoints(cv2.minAreaRect(pts)).astype(np.float32)))
        quad = _order_by_top(box - 0.5, top) + 0.5
        quad_img = (quad * [sx, sy]).astype(np.float32)
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


def widen_quad(quad: np.ndarray, margin: float) -> np.ndarray:
    """The quad (TL, TR, BR, BL) grown by ``margin`` x its height on every side, in its own
    perspective: the unit square's homography onto the quad carries the grown square."""
    q = np.asarray(quad, np.float32).reshape(4, 2)
    if margin <= 0:
        return q
    w = (np.linalg.norm(q[1] - q[0]) + np.linalg.norm(q[2] - q[3])) / 2
    h = (np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])) / 2
    mx, my = margin * h / max(w, 1e-6), margin
    unit = np.float32([[0, 0], [1, 0], [1, 1], [0, 1]])
    m = cv2.getPerspectiveTransform(unit, q)
    grown = np.float32([[[-mx, -my], [1 + mx, -my], [1 + mx, 1 + my], [-mx, 1 + my]]])
    return cv2.perspectiveTransform(grown, m)[0]


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


def quad_mask(quad: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """H x W bool: the pixels inside a quad (image pixels), as the training truth draws a formula."""
    out = np.zeros(shape, np.uint8)
    cv2.fillPoly(out, [np.round(np.asarray(quad, np.float32)).astype(np.int32)], 1)
    return out.astype(bool)


def top_half_mask(quad: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Training target: the half of the quad between its top edge and its midline."""
    q = np.asarray(quad, np.float32)
    mid_l, mid_r = (q[0] + q[3]) / 2, (q[1] + q[2]) / 2
    out = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(out, np.round(np.stack([q[0], q[1], mid_r, mid_l])).astype(np.int32), 1)
    return out
