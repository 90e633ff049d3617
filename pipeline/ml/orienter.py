"""Which way up a rectified formula crop is: a small CNN over a letterboxed grey view.

The detector's corner order is unsure of a formula's top on a rotated photo (its first corner is
the formula's top-left for about 55% of held-out formulas), and a few of its quads start on a
short side (the crop then stands on end). The orienter looks at the crop as the rectifier cut it
and says by how many corners the quad must be rolled so that its first corner is the formula's
top-left: 0 (as it is), 1, 2 (turned by 180°) or 3. It replaces the recognizer reading every
crop both ways up, which cost a second encoder pass and decoding probe per crop.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from .side_models import SideConfig


@dataclass
class OrienterConfig(SideConfig):
    """The view's size and the network's widths (stored under ``"orienter"`` in the detector's config)."""

    height: int = 48
    width: int = 384
    channels: tuple[int, ...] = (16, 32, 64, 96)
    hidden: int = 128


def letterbox(crop: np.ndarray, cfg: OrienterConfig) -> np.ndarray:
    """(height, width) uint8 view of a crop, ink high: scaled to fit whole, centred, zero padded.

    The whole crop is kept in proportion (a crop standing on end stays tall and narrow): its
    aspect is part of what says which way the formula runs. Contrast is stretched between the
    crop's 2nd and 98th grey percentiles so faint pencil and dark paper look alike.
    """
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    h, w = gray.shape[:2]
    scale = min(cfg.height / max(h, 1), cfg.width / max(w, 1))
    nh, nw = max(1, min(cfg.height, round(h * scale))), max(1, min(cfg.width, round(w * scale)))
    small = cv2.resize(gray, (nw, nh), interpolation=cv2.INTER_AREA).astype(np.float32)
    lo, hi = np.percentile(small, (2, 98))
    ink = np.clip((hi - small) / max(hi - lo, 16.0), 0.0, 1.0)
    out = np.zeros((cfg.height, cfg.width), np.uint8)
    y, x = (cfg.height - nh) // 2, (cfg.width - nw) // 2
    out[y:y + nh, x:x + nw] = np.round(ink * 255).astype(np.uint8)
    return out


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Orienter(nn.Module):
    """(B, 1, H, W) letterboxed views in [0, 1] → (B, 4) logits of the roll that puts the top-left first.

    Strided conv blocks, then average and max pooling over the whole view: which way up is told by
    local shapes (a digit's bowl, where sub- and superscripts sit, a fraction bar's neighbours)
    wherever they are, and the pooled map also sees whether the ink runs across or down the view.
    """

    def __init__(self, cfg: OrienterConfig):
        super().__init__()
        c = list(cfg.channels)
        self.cfg = cfg
        self.body = nn.Sequential(*[_block(1 if i == 0 else c[i - 1], c[i]) for i in range(len(c))])
        self.head = nn.Sequential(nn.Linear(2 * c[-1], cfg.hidden), nn.ReLU(inplace=True), nn.Linear(cfg.hidden, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.body(x)
        return self.head(torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1))


def landscape(crop: np.ndarray) -> tuple[np.ndarray, int]:
    """The crop laid on its long side, and the roll (0 or 1) that cut it that way.

    A crop standing on end is seen as it would be cut from its quad rolled by one corner: the
    view's letterbox then spends its pixels along the formula instead of shrinking it to fit the
    view's height, and the network is left with which way up (0 or 2), or, for a formula that
    really is taller than wide, which way it runs (1 or 3).
    """
    h, w = crop.shape[:2]
    return (roll_view(crop, 1), 1) if h > w else (crop, 0)


@torch.no_grad()
def roll_probabilities(model: Orienter, crops: list[np.ndarray], *, device: str = "cpu",
                       batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Per crop, the probabilities (N, 4) of the rolls of its landscape cut (:func:`landscape`), and
    the roll (0 or 1) that cut it: the crop's own roll k is that cut's roll plus it."""
    if not crops:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    model.eval()
    laid = [landscape(c) for c in crops]
    views = np.stack([letterbox(c, model.cfg) for c, _ in laid])
    probs = []
    for i in range(0, len(views), batch_size):
        x = torch.from_numpy(views[i:i + batch_size]).to(device)[:, None].float().div_(255.0)
        probs.append(model(x).softmax(-1).cpu().numpy())
    return np.concatenate(probs).astype(np.float32), np.array([k for _, k in laid], np.int64)


def predict_rolls(model: Orienter, crops: list[np.ndarray], *, device: str = "cpu",
                  batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Per crop, the roll (0-3) that puts the formula's top-left corner first, and its probability."""
    probs, base = roll_probabilities(model, crops, device=device, batch_size=batch_size)
    return (probs.argmax(1) + base) % 4, probs.max(1) if len(probs) else np.zeros(0, np.float32)


def unsure_which_way_up(probs: np.ndarray, below: float) -> np.ndarray:
    """Crops whose landscape cut lies the right way across (roll 0 or 2 likelier than 1 or 3) but
    whose choice between upright and turned is less sure than ``below`` (of the two's share)."""
    across = probs[:, 0] + probs[:, 2]
    return (across >= probs[:, 1] + probs[:, 3]) & (np.maximum(probs[:, 0], probs[:, 2]) < below * across)


def roll_view(view: np.ndarray, k: int) -> np.ndarray:
    """A crop as it would be cut from its quad rolled by ``k`` more corners (a quarter turn each).

    Rolling the quad by one corner makes its last corner the crop's top-left: the picture turns
    by 90° clockwise. Used to make four training samples of every crop.
    """
    return np.ascontiguousarray(np.rot90(view, -k % 4)) if k % 4 else view
