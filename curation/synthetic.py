"""Generated formula images: printed formulas rendered by matplotlib's mathtext, put
on paper, and photographed-looking variants (shadow, highlighter, whiteout).

Used by the demo loader when the real data is absent (and always for the shadow,
highlighter and whiteout kinds, which the public data sets do not have), and usable
by anyone who needs labelled synthetic images: every image comes with the LaTeX it
was rendered from. All functions are deterministic for a given `rng`.
"""
from __future__ import annotations

import io
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image as PILImage

from common.inkml import Ink, render_ink

# School formulas that matplotlib's mathtext renders (a subset of LaTeX).
SCHOOL_FORMULAS = [
    r"x^2 + 2x + 1 = (x+1)^2",
    r"\frac{a}{b} + \frac{c}{d} = \frac{ad+bc}{bd}",
    r"x = \frac{-b \pm \sqrt{b^2-4ac}}{2a}",
    r"\sum_{i=1}^{n} i = \frac{n(n+1)}{2}",
    r"\int_0^1 x^2\,dx = \frac{1}{3}",
    r"\sin^2\theta + \cos^2\theta = 1",
    r"a^2 + b^2 = c^2",
    r"\sqrt{x^2+y^2} \leq |x| + |y|",
    r"y = mx + b",
    r"\log_2 8 = 3",
    r"f(x) = 3x^3 - 2x + 5",
    r"\frac{d}{dx} e^x = e^x",
    r"S = \pi r^2",
    r"\angle A + \angle B + \angle C = 180^\circ",
    r"(a-b)^2 = a^2 - 2ab + b^2",
    r"\frac{3}{4} \times \frac{8}{9} = \frac{2}{3}",
]
VARIANTS = ("printed", "shadow", "highlighter", "whiteout")


@lru_cache(maxsize=128)  # mathtext layout is the slow part; callers never modify the image
def render_formula(latex: str, *, fontsize: int = 28, dpi: int = 100) -> PILImage.Image:
    """The formula in black on white, tightly cropped (RGB). Do not modify the result: it is cached."""
    from matplotlib import mathtext
    from matplotlib.font_manager import FontProperties

    buf = io.BytesIO()
    mathtext.math_to_image(f"${latex}$", buf, prop=FontProperties(size=fontsize), dpi=dpi, format="png")
    buf.seek(0)
    img = PILImage.open(buf)
    img.load()
    rgba = img.convert("RGBA")
    white = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
    return PILImage.alpha_composite(white, rgba).convert("RGB")


def on_paper(formula: PILImage.Image, rng: np.random.Generator, *, margin: int = 40) -> np.ndarray:
    """The formula on slightly tinted, unevenly lit, noisy paper (float32 RGB, 0..255)."""
    ink = np.asarray(formula, dtype=np.float32) / 255.0
    h, w = ink.shape[0] + 2 * margin, ink.shape[1] + 2 * margin
    paper = np.ones((h, w, 3), np.float32) * np.array(rng.uniform([236, 232, 220], [252, 250, 244]), np.float32)
    # Light falls off towards one corner, as under a desk lamp.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
    paper *= (1.0 - 0.08 * (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6))[..., None]
    region = paper[margin:margin + ink.shape[0], margin:margin + ink.shape[1]]
    pen = np.array(rng.uniform([15, 15, 25], [45, 45, 70]), np.float32)
    paper[margin:margin + ink.shape[0], margin:margin + ink.shape[1]] = region * ink + pen * (1 - ink)
    paper += rng.normal(0, 3.0, paper.shape).astype(np.float32)
    return np.clip(paper, 0, 255)


def add_shadow(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A soft-edged shadow (a hand or a phone) falling across part of the formula."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
    side = (np.cos(angle) * (xx - cx) + np.sin(angle) * (yy - cy)) > 0
    mask = cv2.GaussianBlur(side.astype(np.float32), (0, 0), sigmaX=max(3.0, 0.04 * max(h, w)))
    darkness = rng.uniform(0.35, 0.6)
    tint = np.array([1.0, 1.0, 1.08], np.float32)  # shadows are slightly blue
    shaded = img * (1 - darkness * mask[..., None]) * np.where(mask[..., None] > 0.5, tint, 1.0)
    return np.clip(shaded, 0, 255)


def add_highlighter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A translucent highlighter stroke over part of the formula (multiply blend)."""
    h, w = img.shape[:2]
    colours = [(255, 245, 70), (120, 255, 140), (255, 150, 210), (120, 220, 255)]
    colour = np.array(colours[rng.integers(len(colours))], np.float32) / 255.0
    mask = np.zeros((h, w), np.float32)
    x0 = int(rng.uniform(0.05, 0.4) * w)
    x1 = int(rng.uniform(0.6, 0.95) * w)
    yc = int(rng.uniform(0.4, 0.6) * h)
    half = int(rng.uniform(0.18, 0.3) * h)
    tilt = int(rng.uniform(-0.05, 0.05) * h)
    pts = np.array([[x0, yc - half], [x1, yc - half + tilt], [x1, yc + half + tilt], [x0, yc + half]], np.int32)
    cv2.fillPoly(mask, [pts], 1.0)
    mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=2.0)
    strength = rng.uniform(0.75, 0.95)
    blend = 1 - strength * mask[..., None] * (1 - colour)
    return np.clip(img * blend, 0, 255)


def add_whiteout(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A patch of correction fluid over part of the formula, with its raised edge."""
    h, w = img.shape[:2]
    pw, ph = int(rng.uniform(0.12, 0.25) * w), int(rng.uniform(0.35, 0.6) * h)
    x0, y0 = int(rng.uniform(0.2, 0.75) * w - pw / 2), int(rng.uniform(0.3, 0.6) * h - ph / 2)
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (x0 + pw // 2, y0 + ph // 2), (max(pw // 2, 4), max(ph // 2, 4)),
                float(rng.uniform(-10, 10)), 0, 360, 255, thickness=-1)
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), sigmaX=1.5)
    edge = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(np.float32) / 255.0
    fluid = np.array([252, 252, 248], np.float32) + rng.normal(0, 1.5, (h, w, 1)).astype(np.float32)
    out = img * (1 - soft[..., None]) + fluid * soft[..., None]
    out *= (1 - 0.25 * cv2.GaussianBlur(edge, (0, 0), sigmaX=1.0))[..., None]
    return np.clip(out, 0, 255)


def formula_photo(latex: str, variant: str, rng: np.random.Generator) -> PILImage.Image:
    """An RGB image of `latex` printed on paper, with the `variant` applied
    (one of VARIANTS: printed, shadow, highlighter, whiteout)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")
    img = on_paper(render_formula(latex, fontsize=int(rng.choice([24, 28, 32]))), rng)
    if variant == "shadow":
        img = add_shadow(img, rng)
    elif variant == "highlighter":
        img = add_highlighter(img, rng)
    elif variant == "whiteout":
        img = add_whiteout(img, rng)
    return PILImage.fromarray(img.astype(np.uint8))


def formula_handwriting(latex: str, rng: np.random.Generator, *, height: int = 128) -> PILImage.Image:
    """A stand-in for handwriting when no real ink is at hand: the outlines of the
    typeset glyphs as pen strokes, slanted and jittered (grayscale)."""
    from matplotlib.textpath import TextPath

    path = TextPath((0, 0), f"${latex}$", size=40)
    strokes = [np.column_stack([p[:, 0], -p[:, 1]]) for p in path.to_polygons(closed_only=False) if len(p) > 1]
    ink = Ink(traces=strokes, truth=latex)
    return render_ink(ink, height=height, pen_width=2.0, slant=float(rng.uniform(-0.15, 0.25)),
                      jitter=float(rng.uniform(0.3, 0.8)), rng=rng)
