"""Seeded training-data generator: printed and handwritten formula crops, degradations, photos.

Kinds of formula crops
  * printed: random formulas from a small grammar rendered with matplotlib mathtext in five
    math fonts (``render_mathtext``); real printed crops come from the im2markup pages
    (``im2markup_crop``); plain Pillow text (``render_pillow_text``) covers what mathtext
    cannot draw (e.g. arithmetic written with an ordinary font, as on worksheets);
  * handwritten: CROHME *training* inks only (``pipeline.ml.ink``) with varied pen width,
    slant and jitter.

Degradations (``degrade``): paper texture, shadow, highlighter, whiteout, rotation,
perspective, blur, JPEG. ``compose_photo`` pastes 1-3 crops onto a sheet, warps each by a
random rotation/perspective and returns the photo with every formula's true quadrilateral (its
ink box, warped with it) and a pixel mask, as the detector's training target. All randomness goes through a
``numpy.random.Generator`` built from an explicit seed, so every sample is reproducible.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .imageio import crop_to_ink, ink_box

GREEK = [r"\alpha", r"\beta", r"\gamma", r"\delta", r"\theta", r"\lambda", r"\mu", r"\pi", r"\sigma", r"\phi",
         r"\omega", r"\Delta", r"\Omega"]
LETTERS = list("abcdefghknmpqrstuvwxyzABCFGHLMNPRSTXY")
DIGITS = list("0123456789")
OPS = ["+", "-", "=", r"\times", r"\cdot", r"\leq", r"\geq", r"\neq", r"\pm", "<", ">", r"\div", "/"]
FUNCS = [r"\sin", r"\cos", r"\tan", r"\log", r"\ln", r"\exp"]
BIG = [r"\sum", r"\int", r"\prod", r"\lim"]
MATH_FONTS = ["dejavusans", "cm", "stix", "stixsans", "dejavuserif"]


def _atom(rng: np.random.Generator) -> str:
    r = rng.random()
    if r < 0.45:
        return str(rng.choice(LETTERS))
    if r < 0.75:
        return "".join(rng.choice(DIGITS, size=int(rng.integers(1, 3))))
    return str(rng.choice(GREEK))


def _term(rng: np.random.Generator, depth: int) -> str:
    r = rng.random()
    a = _atom(rng)
    if depth > 0 and r < 0.14:
        return rf"\frac{{{_expr(rng, depth - 1, 2)}}}{{{_expr(rng, depth - 1, 2)}}}"
    if depth > 0 and r < 0.22:
        return rf"\sqrt{{{_expr(rng, depth - 1, 3)}}}"
    if r < 0.38:
        return f"{a}^{{{_expr(rng, 0, 1) if depth else _atom(rng)}}}"
    if r < 0.50:
        return f"{a}_{{{_atom(rng)}}}"
    if depth > 0 and r < 0.56:
        return rf"{rng.choice(FUNCS)}{{{_expr(rng, 0, 1)}}}"
    if depth > 0 and r < 0.62:
        return rf"\left({_expr(rng, depth - 1, 3)}\right)"
    if depth > 0 and r < 0.66:
        big = str(rng.choice(BIG))
        if big == r"\lim":
            return r"\lim_{{{} \rightarrow {}}}".format(_atom(rng), rng.choice(["0", r"\infty"]))
        return f"{big}_{{{_atom(rng)}}}^{{{_atom(rng)}}}"
    return a


def _expr(rng: np.random.Generator, depth: int, max_terms: int) -> str:
    n = int(rng.integers(1, max_terms + 1))
    parts = [_term(rng, depth)]
    for _ in range(n - 1):
        parts += [str(rng.choice(OPS)), _term(rng, depth)]
    return " ".join(parts)


def random_formula(rng: np.random.Generator) -> str:
    """A random school-style formula that matplotlib mathtext can draw."""
    return _expr(rng, depth=2, max_terms=4)


# where a display formula may be cut into pieces that stand on their own
COMMON_JOINS = ["=", ",", "+", "-", "<", ">", r"\leq", r"\geq", r"\approx", r"\equiv", r"\sim", r"\simeq",
                r"\neq"]
JOINS = COMMON_JOINS + [r"\rightarrow", r"\to", r"\propto", r"\in", r"\quad"]
_OPENERS = {"{", r"\left", r"\begin"}
_CLOSERS = {"}", r"\right", r"\end"}


def formula_pieces(tokens: list[str]) -> list[list[str]]:
    """A normalised formula cut at its top-level relations, commas, plus and minus signs.

    Cuts fall only outside every group (braces, ``\\left``...``\\right``, environments), so
    each piece is well-formed LaTeX; the joining tokens themselves are dropped.
    """
    pieces, cur, depth = [], [], 0
    for tok in tokens:
        if tok in _OPENERS:
            depth += 1
        elif tok in _CLOSERS:
            depth -= 1
        if depth == 0 and tok in JOINS:
            if cur:
                pieces.append(cur)
            cur = []
            continue
        cur.append(tok)
    if cur:
        pieces.append(cur)
    if depth:  # unbalanced groups: no piece of it is sure to be well-formed
        return []
    # a script or prime cannot start a piece: it belongs to what came before the cut
    return [p for p in pieces if p[0] not in ("^", "_", "'")]


def recombined_formula(pieces: list[list[str]], rng: np.random.Generator, *, max_tokens: int = 150) -> list[str]:
    """A new formula in the style of a corpus: 1-5 of its pieces joined by relations and commas.

    ``pieces`` comes from :func:`formula_pieces` over the *training* truths; the result has
    token sequences the corpus never held (new contexts, new lengths) in its own vocabulary.
    """
    out: list[str] = []
    for k in range(int(rng.integers(1, 6))):
        piece = pieces[int(rng.integers(len(pieces)))]
        while len(piece) > 1 and piece[-1] == ".":  # a full stop ends a formula, not a piece
            piece = piece[:-1]
        if out and len(out) + 2 + len(piece) > max_tokens:
            break
        if k:
            out.append(str(rng.choice(COMMON_JOINS if rng.random() < 0.9 else JOINS)))
        out += piece
    out = out[:max_tokens - 1]
    if rng.random() < 0.35:
        out.append(".")
    return out


# what :func:`substitute_symbols` may draw: the recognizer's own letters, digits and Greek letters
_LOWER, _UPPER = list("abcdefghijklmnopqrstuvwxyz"), list("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_GREEK_LOWER = [rf"\{g}" for g in ("alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta kappa lambda mu "
                                     "nu xi pi rho sigma tau phi varphi chi psi omega").split()]
_GREEK_UPPER = [rf"\{g}" for g in "Gamma Delta Theta Lambda Xi Pi Sigma Phi Psi Omega".split()]
_SYMBOL_CLASSES = [set(c) for c in (_LOWER, _UPPER, _GREEK_LOWER, _GREEK_UPPER)]


def substitute_symbols(tokens: list[str], rng: np.random.Generator, *, share: float = 0.5) -> list[str]:
    """The same formula with other symbols: each distinct letter (Latin or Greek, case kept) is
    renamed everywhere with probability ``share``, each digit redrawn with that probability.

    Recombined formulas reuse the pieces of a few hundred training truths, which a model can
    learn by heart; renamed, the structure stays arXiv's and the token sequence is new.
    Environment names and an array's column spec (``\\begin { array } { c c }``) are kept.
    """
    out, rename, i = [], {}, 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in (r"\begin", r"\end") and tokens[i + 1: i + 2] == ["{"]:
            # the environment's name (tokenised letter by letter), and an array's column spec, unchanged
            end = _group_end(tokens, i + 1)
            if tok == r"\begin" and "".join(tokens[i + 2: end]) == "array" and tokens[end + 1: end + 2] == ["{"]:
                end = _group_end(tokens, end + 1)
            out += tokens[i: end + 1]
            i = end + 1
            continue
        if not _renamable(tok):
            out.append(tok)
        elif tok.isdigit():
            out.append(str(rng.integers(10)) if rng.random() < share else tok)
        else:
            if tok not in rename:
                pool = next(sorted(c) for c in _SYMBOL_CLASSES if tok in c)
                rename[tok] = str(rng.choice(pool)) if rng.random() < share else tok
            out.append(rename[tok])
        i += 1
    return out


def _group_end(tokens: list[str], start: int) -> int:
    """Index of the ``}`` closing the group opened at ``tokens[start]`` (the last token if unclosed)."""
    depth = 0
    for j in range(start, len(tokens)):
        depth += {"{": 1, "}": -1}.get(tokens[j], 0)
        if depth == 0:
            return j
    return len(tokens) - 1


def _renamable(tok: str) -> bool:
    return (len(tok) == 1 and tok.isdigit()) or any(tok in c for c in _SYMBOL_CLASSES)


def _tight(gray: np.ndarray, margin: int = 3) -> np.ndarray:
    ys, xs = np.nonzero(gray < 200)
    if len(xs) == 0:
        return gray
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    crop = gray[y0:y1 + 1, x0:x1 + 1]
    return cv2.copyMakeBorder(crop, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=255)


# mathtext reads ``x _ { 2 }`` as ``x``, a stray ``_`` and an inline ``2``: a space after a script
# mark breaks the script, and the corpora's normalised token strings have one after every token
_SCRIPT_SPACE = re.compile(r"(?<!\\)([_^])\s+")


def render_mathtext(latex: str, *, size: float = 20, font: str = "cm", dpi: int = 100) -> np.ndarray:
    """Render with matplotlib mathtext into a tight uint8 grayscale crop (255 = paper).

    ``latex`` may be raw or space-separated normalised tokens (``x _ { 2 }``): spaces after a
    script mark are dropped, so that both are typeset as LaTeX would.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import mathtext
    from matplotlib.font_manager import FontProperties

    buf = io.BytesIO()
    latex = _SCRIPT_SPACE.sub(r"\1", latex)
    mathtext.math_to_image(f"${latex}$", buf, prop=FontProperties(size=size, math_fontfamily=font), dpi=dpi,
                           format="png")
    buf.seek(0)
    rgba = np.asarray(Image.open(buf).convert("RGBA"), dtype=np.float32)
    # math_to_image draws black ink on a transparent background
    gray = 255 - rgba[..., 3] * (1 - rgba[..., :3].mean(-1) / 255)
    return _tight(gray.clip(0, 255).astype(np.uint8))


def typeset_samples(token_lists: list[list[str]], *, seed: int = 0,
                    fonts: tuple[str, ...] | list[str] = tuple(MATH_FONTS)) -> list[tuple[np.ndarray, list[str]]]:
    """Each formula typeset in print (mathtext, a seeded font of ``fonts`` and size):
    ``(crop, tokens)``; formulas mathtext cannot typeset are left out. ``calibrate_recognizer
    --typeset`` fits the confidence on the validation truths typeset this way beside their
    handwriting; ``bench/finetune_validation.py`` reads them in Computer Modern alone (``fonts=("cm",)``),
    pdflatex's font, as a printed validation set."""
    rng, fonts = np.random.default_rng(seed), list(fonts)
    out = []
    for tokens in token_lists:
        size, font = float(rng.uniform(16, 30)), str(rng.choice(fonts))
        if not tokens:
            continue
        try:
            out.append((render_mathtext(" ".join(tokens), size=size, font=font), tokens))
        except (ValueError, RuntimeError):  # mathtext's parse errors: a construct it does not know
            continue
    return out


def render_pillow_text(text: str, *, size: int = 28) -> np.ndarray:
    """Plain text formula (e.g. ``12 + 7 = 19``) drawn with Pillow's DejaVu font."""
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        font = ImageFont.load_default()
    img = Image.new("L", (size * (len(text) + 2), size * 2), 255)
    ImageDraw.Draw(img).text((size // 2, size // 3), text, fill=0, font=font)
    return _tight(np.asarray(img))


def im2markup_crop(page_path, *, margin: int = 6) -> np.ndarray:
    """The formula of an im2markup page: the ink's bounding box (the only ink on the page)."""
    rgba = np.asarray(Image.open(page_path).convert("RGBA"), dtype=np.float32)
    gray = 255 - rgba[..., 3] * (1 - rgba[..., :3].mean(-1) / 255)
    crop = crop_to_ink(gray, margin=margin)
    if crop is None:
        raise ValueError(f"{page_path}: page has no ink")
    return crop.clip(0, 255).astype(np.uint8)


# ---------------------------------------------------------------- degradations

def paper(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An RGB sheet: tinted paper with low-frequency brightness and fibre noise."""
    tint = rng.uniform(215, 255, 3)
    low = cv2.resize(rng.normal(0, 1, (4, 4)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    fibre = rng.normal(0, rng.uniform(1, 6), (h, w)).astype(np.float32)
    sheet = tint[None, None, :] + (low * rng.uniform(2, 10) + fibre)[..., None]
    if rng.random() < 0.3:  # squared exercise-book paper
        step = int(rng.integers(18, 40))
        sheet[::step, :, :] -= rng.uniform(20, 50)
        sheet[:, ::step, :] -= rng.uniform(20, 50)
    return sheet.clip(0, 255).astype(np.uint8)


def add_shadow(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A soft dark region over part of the photo (a hand or a phone's shadow)."""
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.float32)
    pts = (rng.random((int(rng.integers(3, 6)), 2)) * [w, h] * 1.4 - [w * 0.2, h * 0.2]).astype(np.int32)
    cv2.fillPoly(mask, [cv2.convexHull(pts)], 1.0)
    mask = cv2.GaussianBlur(mask, (0, 0), max(h, w) / 15)
    return (img * (1 - rng.uniform(0.25, 0.6) * mask)[..., None]).astype(np.uint8)


def add_highlighter(img: np.ndarray, rng: np.random.Generator, box=None) -> np.ndarray:
    """A translucent coloured marker stroke (multiply blend), over ``box`` when given."""
    h, w = img.shape[:2]
    colour = np.array(rng.choice([[255, 255, 80], [120, 255, 120], [255, 150, 220], [120, 220, 255]]), np.float32)
    layer = np.full((h, w, 3), 255, np.float32)
    if box is None:
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(w // 5, w // 2)), y0 + int(rng.integers(8, max(9, h // 10)))
    else:
        x0, y0, x1, y1 = box
    cv2.rectangle(layer, (x0, y0), (x1, y1), colour.tolist(), -1)
    return (img.astype(np.float32) * layer / 255).clip(0, 255).astype(np.uint8)


def add_whiteout(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An opaque white correction-fluid blob."""
    h, w = img.shape[:2]
    out = img.copy()
    c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
    axes = (int(rng.integers(6, max(7, w // 12))), int(rng.integers(4, max(5, h // 20))))
    cv2.ellipse(out, c, axes, float(rng.uniform(0, 180)), 0, 360, (250, 250, 248), -1)
    return out


def blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Defocus or motion blur."""
    if rng.random() < 0.5:
        return cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
    k = int(rng.integers(3, 7))
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2, :] = 1 / k
    rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(0, 180)), 1)
    kernel = cv2.warpAffine(kernel, rot, (k, k))
    return cv2.filter2D(img, -1, kernel / max(kernel.sum(), 1e-6))


def jpeg(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Re-encode as JPEG at a random quality."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else img


def rotate_perspective(img: np.ndarray, rng: np.random.Generator, *, max_angle: float = 8,
                       max_persp: float = 0.06) -> np.ndarray:
    """A small rotation and keystone for a single crop (recognizer augmentation)."""
    h, w = img.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    jit = rng.uniform(-max_persp, max_persp, (4, 2)) * [w, h]
    m = cv2.getPerspectiveTransform(src, (src + jit).astype(np.float32))
    rot = np.vstack([cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-max_angle, max_angle)), 1), [0, 0, 1]])
    return cv2.warpPerspective(img, rot @ m, (w, h), borderMode=cv2.BORDER_CONSTANT,
                               borderValue=(255,) * (img.shape[2] if img.ndim == 3 else 1))


def degrade(img: np.ndarray, rng: np.random.Generator, *, strength: float = 1.0) -> np.ndarray:
    """Apply a random subset of the photo degradations (order as in a real capture)."""
    if rng.random() < 0.3 * strength:
        img = add_highlighter(img, rng)
    if rng.random() < 0.2 * strength:
        img = add_whiteout(img, rng)
    if rng.random() < 0.4 * strength:
        img = add_shadow(img, rng)
    if rng.random() < 0.4 * strength:
        img = blur(img, rng)
    if rng.random() < 0.5 * strength:
        img = jpeg(img, rng)
    return img


# ---------------------------------------------------------------- photos for the detector

@dataclass
class Photo:
    """A generated photo with its truth: one (4, 2) quad per formula (clockwise from top-left) and a mask."""

    image: np.ndarray          # H x W x 3 uint8 RGB
    quads: list[np.ndarray]    # float32 (4, 2) in pixels: each formula's ink box, warped with it
    mask: np.ndarray           # H x W uint8, 1 inside any formula quad
    crop_quads: list[np.ndarray] = field(default_factory=list)  # the whole pasted crops
    placed: list[int] = field(default_factory=list)  # for each quad, the index of its crop in the input


def compose_photo(rng: np.random.Generator, crops: list[np.ndarray], *, size: tuple[int, int] = (320, 320),
                  max_angle: float = 180, max_persp: float = 0.12,
                  height_frac: tuple[float, float] = (0.08, 0.22)) -> Photo:
    """Paste grayscale formula crops onto a sheet, each rotated/warped; return photo + quads + mask.

    Crops are placed without overlapping (a placement that collides is retried and finally
    dropped), so every returned quad holds exactly one formula.
    """
    h, w = size
    sheet = paper(rng, h, w).astype(np.float32)
    ink_colour = rng.uniform(0, 90, 3) if rng.random() < 0.7 else np.array([20, 30, rng.uniform(90, 160)])
    occupied = np.zeros((h, w), np.uint8)
    truth_mask = np.zeros((h, w), np.uint8)
    quads, crop_quads = [], []
    global_angle = float(rng.uniform(-max_angle, max_angle))
    placed = []
    for index, crop in enumerate(crops):
        ch, cw = crop.shape[:2]
        target_w = rng.uniform(0.3, 0.75) * w
        scale = min(target_w / cw, rng.uniform(*height_frac) * h / ch)
        bw, bh = cw * scale, ch * scale
        for _attempt in range(12):
            cx, cy = rng.uniform(bw / 2 + 4, w - bw / 2 - 4), rng.uniform(bh / 2 + 4, h - bh / 2 - 4)
            if bw + 8 >= w or bh + 8 >= h:
                break
            angle = np.deg2rad(global_angle + rng.normal(0, 6))
            corners = np.array([[-bw / 2, -bh / 2], [bw / 2, -bh / 2], [bw / 2, bh / 2], [-bw / 2, bh / 2]])
            corners += rng.uniform(-max_persp, max_persp, (4, 2)) * [bw, bh]
            rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            quad = (corners @ rot.T + [cx, cy]).astype(np.float32)
            if quad.min() < 1 or quad[:, 0].max() > w - 2 or quad[:, 1].max() > h - 2:
                continue
            region = np.zeros((h, w), np.uint8)
            cv2.fillConvexPoly(region, np.round(quad).astype(np.int32), 1)
            grown = cv2.dilate(region, np.ones((7, 7), np.uint8))
            if (grown & occupied).any():
                continue
            src = np.float32([[0, 0], [cw, 0], [cw, ch], [0, ch]])
            m = cv2.getPerspectiveTransform(src, quad)
            ink = 1 - cv2.warpPerspective(crop, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=255).astype(np.float32) / 255
            sheet = sheet * (1 - ink[..., None]) + ink[..., None] * ink_colour
            occupied |= region
            crop_quads.append(quad)
            ink_quad = _ink_quad(crop, m)
            cv2.fillConvexPoly(truth_mask, np.round(ink_quad).astype(np.int32), 1)
            quads.append(ink_quad)
            placed.append(index)
            break
    img = degrade(sheet.clip(0, 255).astype(np.uint8), rng)
    return Photo(image=img, quads=quads, mask=truth_mask, crop_quads=crop_quads, placed=placed)


def _ink_quad(crop: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The crop's ink box (dark pixels, as an annotator would draw it), carried by the crop's warp.

    The truth is the formula, not the scrap of paper it was rendered on: the crops' blank
    margins differ by source (none for mathtext, 4 px of 64 for CROHME, 6 px around an
    im2markup formula) and their corners are invisible on the photo.
    """
    x0, y0, x1, y1 = ink_box(crop) or (0, 0, crop.shape[1], crop.shape[0])
    box = np.float32([[[x0, y0], [x1, y0], [x1, y1], [x0, y1]]])
    return cv2.perspectiveTransform(box, m)[0].astype(np.float32)
