"""Corner refiner: a small CNN that moves a detected quad's corners onto the formula's ink.

The detector's quads come from a 128x128 mask, so on a photo a few degrees or pixels of error
remain (mean IoU 0.82 against the ink box). The refiner looks again at each region at the
formula's own resolution: the quad, grown by a margin in its own perspective, is warped to a
fixed ``height`` x ``width`` grey view (OpenCV), and the network regresses where the ink box's
4 corners lie in that view (normalised to [0, 1]). Mapping them back through the inverse warp
gives the new quad, in the input quad's corner order, so the detector's (and the recognizer's)
choice of which corner is the top-left is kept. Applied ``iterations`` times: the second look
starts from a better-centred view. Weights live beside the detector's (``refiner.pt``, its
settings under ``"refiner"`` in the detector's ``config.json``); a detector folder without them
is used as it is.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from .evaluate import quad_iou
from .side_models import SideConfig

UNIT = np.float32([[0, 0], [1, 0], [1, 1], [0, 1]])


@dataclass
class RefinerConfig(SideConfig):
    """Hyper-parameters saved with the weights (the detector's ``config.json``, key ``refiner``)."""

    height: int = 48
    width: int = 256
    channels: tuple[int, ...] = (16, 32, 64, 96)
    hidden: int = 192
    # paper around the quad in the view: this fraction of its height above and below, and on the
    # left and right the larger of that (in height units) and ``margin_x`` of its width, so that a
    # quad 40% too low or 8% too short still has the whole formula in view
    margin_y: float = 0.35
    margin_x: float = 0.08
    iterations: int = 2
    # also look at each view turned by 180 degrees (the refiner learnt upside-down formulas too:
    # the detector draws half of them so) and average the two answers; off by default: on 120
    # validation photos it added 0.001 mean IoU for three times the time
    turned_look: bool = False
    # a refined quad that overlaps the detector's by less than this is a failure: keep the old one
    min_iou: float = 0.5


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class QuadRefiner(nn.Module):
    """(B, 1, H, W) grey views in [0, 1] → (B, 8) corner positions (x, y per corner) in [0, 1] of the view.

    Strided conv blocks down to H/16 x W/16 and a fully connected head: the head keeps *where*
    in the view each feature is, which a global pooling would throw away.
    """

    def __init__(self, cfg: RefinerConfig):
        super().__init__()
        c = list(cfg.channels)
        self.body = nn.Sequential(*[_block(1 if i == 0 else c[i - 1], c[i]) for i in range(len(c))])
        cells = (cfg.height >> len(c)) * (cfg.width >> len(c)) * c[-1]
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(cells, cfg.hidden), nn.ReLU(inplace=True),
                                  nn.Linear(cfg.hidden, 8))
        # start from "the detector was right": the input quad's corners in the view
        with torch.no_grad():
            self.head[-1].weight.mul_(0.1)
            self.head[-1].bias.copy_(torch.from_numpy(prior_corners(cfg, 4.0).reshape(-1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x - 0.5))


def grown_unit(cfg: RefinerConfig, aspect: float) -> np.ndarray:
    """The unit square grown by the view's margins, for a quad ``aspect`` = width / height."""
    mx = max(cfg.margin_y / max(aspect, 1e-3), cfg.margin_x)
    my = cfg.margin_y
    return np.float32([[-mx, -my], [1 + mx, -my], [1 + mx, 1 + my], [-mx, 1 + my]])


def prior_corners(cfg: RefinerConfig, aspect: float) -> np.ndarray:
    """(4, 2) where the input quad's own corners fall in its view, normalised to [0, 1]."""
    g = grown_unit(cfg, aspect)
    span = g[2] - g[0]
    return ((UNIT - g[0]) / span).astype(np.float32)


def _sides(q: np.ndarray) -> tuple[float, float]:
    w = (np.linalg.norm(q[1] - q[0]) + np.linalg.norm(q[2] - q[3])) / 2
    h = (np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])) / 2
    return float(w), float(h)


def view(gray: np.ndarray, quad: np.ndarray, cfg: RefinerConfig) -> tuple[np.ndarray, np.ndarray]:
    """(view, M): the quad's grown neighbourhood warped to ``height`` x ``width`` uint8, and the 3x3
    homography M from image pixels to view pixels (corners of the view at 0 and width/height).

    A region much larger than the view is first shrunk with area averaging (warpPerspective
    only interpolates, which would alias a 4,000-pixel photo's formula into noise).
    """
    q = np.asarray(quad, np.float32).reshape(4, 2)
    w, h = _sides(q)
    src = cv2.perspectiveTransform(grown_unit(cfg, w / max(h, 1e-6))[None], cv2.getPerspectiveTransform(UNIT, q))[0]
    dst = np.float32([[0, 0], [cfg.width, 0], [cfg.width, cfg.height], [0, cfg.height]])
    img_h, img_w = gray.shape[:2]
    shrink = min(1.0, 2 * cfg.height / max(h * (1 + 2 * cfg.margin_y), 1.0))
    offset = np.zeros(2, np.float32)
    image = gray
    if shrink < 0.99:
        x0, y0 = np.floor(src.min(0)).clip(0, [img_w - 1, img_h - 1]).astype(int)
        x1, y1 = np.ceil(src.max(0)).clip(1, [img_w, img_h]).astype(int)
        x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        sub = gray[y0:y1, x0:x1]
        size = (max(int(round(sub.shape[1] * shrink)), 1), max(int(round(sub.shape[0] * shrink)), 1))
        image = cv2.resize(sub, size, interpolation=cv2.INTER_AREA)
        offset = np.float32([x0, y0])
        scale = np.float32([size[0] / sub.shape[1], size[1] / sub.shape[0]])
    else:
        scale = np.float32([1, 1])
    m_local = cv2.getPerspectiveTransform(((src - offset) * scale).astype(np.float32), dst)
    out = cv2.warpPerspective(image, m_local, (cfg.width, cfg.height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    to_local = np.array([[scale[0], 0, -offset[0] * scale[0]], [0, scale[1], -offset[1] * scale[1]], [0, 0, 1]])
    return out, (m_local @ to_local)


def to_gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY)


def corners_to_view(quad: np.ndarray, m: np.ndarray, cfg: RefinerConfig) -> np.ndarray:
    """(4, 2) image-pixel corners → normalised view coordinates (the training target)."""
    pts = cv2.perspectiveTransform(np.asarray(quad, np.float64).reshape(1, 4, 2), m)[0]
    return (pts / [cfg.width, cfg.height]).astype(np.float32)


def corners_from_view(pred: np.ndarray, m: np.ndarray, cfg: RefinerConfig) -> np.ndarray:
    """Normalised view coordinates (8,) → (4, 2) image-pixel corners."""
    pts = np.asarray(pred, np.float64).reshape(1, 4, 2) * [cfg.width, cfg.height]
    return cv2.perspectiveTransform(pts, np.linalg.inv(m))[0].astype(np.float32)


def align_to(truth: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """``truth``'s corners rolled into ``quad``'s order (the roll with the least total distance).

    The refiner keeps the input's corner order, so its target is the truth starting from the
    corner nearest the input's first one.
    """
    t = np.asarray(truth, np.float32).reshape(4, 2)
    q = np.asarray(quad, np.float32).reshape(4, 2)
    rolls = [np.roll(t, -k, axis=0) for k in range(4)]
    return min(rolls, key=lambda r: float(np.linalg.norm(r - q, axis=1).sum()))


def _predict(model: QuadRefiner, views: list[np.ndarray], device: str, batch_size: int) -> np.ndarray:
    preds = []
    for j in range(0, len(views), batch_size):
        x = torch.from_numpy(np.stack(views[j:j + batch_size])[:, None].astype(np.float32) / 255).to(device)
        preds.append(model(x).float().cpu().numpy())
    return np.concatenate(preds)


def unturn(pred: np.ndarray) -> np.ndarray:
    """Answers (N, 8) for views turned by 180 degrees → the same corners in the upright views.

    The turned view's first corner is the input quad's third, and a point (x, y) there is
    (1 - x, 1 - y) in the upright view.
    """
    pts = 1 - np.asarray(pred, np.float32).reshape(-1, 4, 2)
    return np.roll(pts, 2, axis=1).reshape(-1, 8)


@torch.no_grad()
def refine_quads(model: QuadRefiner, cfg: RefinerConfig, images: list[np.ndarray],
                 quads: list[list[np.ndarray]], *, device: str = "cpu", batch_size: int = 64) -> list[list[np.ndarray]]:
    """Refined copies of ``quads`` (per image, each (4, 2) in image pixels), all regions batched.

    A refined quad that is not convex, leaves the image by more than its margin or overlaps its
    input by less than ``min_iou`` is a failed look: the input quad is kept.
    """
    model.eval()
    grays = [to_gray(im) for im in images]
    out = [[np.asarray(q, np.float32).copy() for q in qs] for qs in quads]
    jobs = [(k, i) for k, qs in enumerate(quads) for i in range(len(qs))]
    if not jobs:
        return out
    for _ in range(cfg.iterations):
        views, homs = [], []
        for k, i in jobs:
            v, m = view(grays[k], out[k][i], cfg)
            views.append(v)
            homs.append(m)
        pred = _predict(model, views, device, batch_size)
        if cfg.turned_look:
            turned = _predict(model, [np.ascontiguousarray(v[::-1, ::-1]) for v in views], device, batch_size)
            pred = (pred + unturn(turned)) / 2
        for (k, i), p, m in zip(jobs, pred, homs, strict=True):
            old = out[k][i]
            new = corners_from_view(p, m, cfg)
            h_img, w_img = images[k].shape[:2]
            new[:, 0] = new[:, 0].clip(0, w_img - 1)
            new[:, 1] = new[:, 1].clip(0, h_img - 1)
            if (np.isfinite(new).all() and cv2.isContourConvex(new.reshape(-1, 1, 2))
                    and quad_iou(new, old) >= cfg.min_iou):
                out[k][i] = new
    return out
