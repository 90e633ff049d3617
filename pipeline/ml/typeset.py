"""Printed formulas typeset by pdflatex, the way the im2markup pages were made.

im2latex-100k (Harvard NLP's im2markup) rendered each arXiv formula in a 12pt ``article``
document, inside ``displaymath``, and rasterised the PDF at 200 dpi; its pages are what the
im2markup test fifth reads (they match a plain preamble, not the amsmath one: :data:`PREAMBLE`). matplotlib's mathtext only imitates that: its own
layout of fractions, scripts and spacing, and no arrays, ``\\left`` sizes or many macros (it cannot
typeset 12% of the im2markup training truths). :func:`render_many` typesets many formulas with
one pdflatex run (a page each) and rasterises the pages with PDFium (``pypdfium2``), so that
training crops of new formulas look like the test pages.

pdflatex is a system program (Debian: ``texlive-latex-base texlive-fonts-recommended``);
:func:`available` says whether it is installed, and the callers skip or refuse clearly without it.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .imageio import crop_to_ink

# The im2markup pages match a plain 12pt article to the pixel; amsmath (loaded by the im2latex
# scripts' template) scales the big delimiters and sums up to 14 px taller, which the pages are not.
# So a formula is typeset plain first, and with amsmath and amssymb only when it needs their macros.
PREAMBLE = "\\documentclass[12pt]{article}\n\\pagestyle{empty}\n\\begin{document}\n"
PREAMBLE_AMS = ("\\documentclass[12pt]{article}\n\\pagestyle{empty}\n\\usepackage{amsmath}\n\\usepackage{amssymb}\n"
                "\\begin{document}\n")
# a formula pdflatex cannot typeset is reported as ``! <message>`` and, lines later, ``l.<line>``
_ERROR = re.compile(r"^! ", re.M)
_ERROR_LINE = re.compile(r"^l\.(\d+)", re.M)
# the normaliser spells environment names letter by letter (``\begin { a r r a y }``)
_ENV = re.compile(r"\\(begin|end) *\{([a-zA-Z* ]+)\}")
# token-spaced spellings TeX reads differently: ``' '`` is two superscripts (an error), ``\\ [ 6 p t ]``
# an illegal unit (which can send TeX into a loop)
_PRIMES = re.compile(r"'(?: +')+")
_SKIP = re.compile(r"\\\\ *\[([-0-9. a-z]+)\]")
_LINES_PER_FORMULA = 4
# a run takes ~5 ms a formula; a formula that sends TeX into a loop is cut off and found by halving
_TIMEOUT_S_PER_FORMULA = 0.02


def available() -> bool:
    """Whether ``pdflatex`` is on the PATH."""
    return shutil.which("pdflatex") is not None


def latex_source(tokens_or_source: str) -> str:
    """A normalised token string as pdflatex reads it: environment names joined again, one line."""
    src = _ENV.sub(lambda m: f"\\{m.group(1)}{{{m.group(2).replace(' ', '')}}}", tokens_or_source)
    src = _PRIMES.sub(lambda m: m.group(0).replace(" ", ""), src)
    src = _SKIP.sub(lambda m: f"\\\\[{m.group(1).replace(' ', '')}]", src)
    return " ".join(src.split())


def _document(sources: list[str], preamble: str) -> str:
    # every formula takes _LINES_PER_FORMULA lines, so an error's line number names its formula
    body = "".join(f"\\begin{{displaymath}}\n{latex_source(s)}\n\\end{{displaymath}}\n\\newpage\n" for s in sources)
    return preamble + body + "\\end{document}\n"


def _compile(sources: list[str], work: Path, preamble: str) -> tuple[Path | None, set[int] | None]:
    """The PDF of ``sources`` (a page each) and the indices of the formulas pdflatex reported
    errors in; (None, None) when it failed in a way no line number explains."""
    tex = work / "f.tex"
    tex.write_text(_document(sources, preamble), encoding="utf-8")
    for old in ("f.pdf", "f.log"):
        (work / old).unlink(missing_ok=True)
    try:
        subprocess.run(["pdflatex", "-interaction=nonstopmode", "-no-shell-escape", "f.tex"], cwd=work,
                       capture_output=True, timeout=1 + _TIMEOUT_S_PER_FORMULA * len(sources), check=False)
    except subprocess.TimeoutExpired:
        return None, None
    log = (work / "f.log").read_text(encoding="latin-1") if (work / "f.log").exists() else ""
    pdf = work / "f.pdf"
    first = preamble.count("\n") + 1
    bad: set[int] = set()
    for err in _ERROR.finditer(log):
        line = _ERROR_LINE.search(log, err.end())
        if line is None:
            return None, None
        index = (int(line.group(1)) - first) // _LINES_PER_FORMULA
        if not 0 <= index < len(sources):
            return None, None
        bad.add(index)
    return (pdf if pdf.exists() else None), bad


def _rasterise(pdf: Path, dpis: list[float]) -> list[np.ndarray | None]:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(pdf))
    try:
        if len(doc) != len(dpis):  # a formula that broke the page flow: the chunk is not trusted
            return [None] * len(dpis)
        out = []
        for i, dpi in enumerate(dpis):
            page = doc[i]
            bitmap = page.render(scale=dpi / 72, grayscale=True)
            pixels = bitmap.to_numpy()
            gray = np.array(pixels[..., 0] if pixels.ndim == 3 else pixels)  # a copy: the bitmap is freed
            bitmap.close()
            page.close()
            out.append(crop_to_ink(gray))
        return out
    finally:
        doc.close()


def render_many(sources: list[str], *, dpis: list[float] | None = None, chunk: int = 64) -> list[np.ndarray | None]:
    """Typeset each LaTeX math source (raw or space-separated tokens) as an im2markup page and
    return its crop (uint8 grayscale, 255 = paper, cropped to the ink), or None for a formula
    pdflatex cannot typeset. ``dpis``: the rasterising resolution per formula (default 200, the
    im2markup pages'). Formulas go ``chunk`` to a pdflatex run; a run with an error is split in
    halves until the formulas that fail are alone."""
    if not available():
        raise RuntimeError("pdflatex is not installed (Debian: apt-get install texlive-latex-base "
                           "texlive-fonts-recommended)")
    dpis = list(dpis) if dpis is not None else [200.0] * len(sources)
    if len(dpis) != len(sources):
        raise ValueError("dpis must give one resolution per source")
    out: list[np.ndarray | None] = [None] * len(sources)
    with tempfile.TemporaryDirectory(prefix="mathset-typeset-") as tmp:
        work = Path(tmp)
        for preamble in (PREAMBLE, PREAMBLE_AMS):
            left = [j for j, crop in enumerate(out) if crop is None]
            _render_into(out, left, sources, dpis, chunk, work, preamble)
    return out


def _render_into(out: list, left: list[int], sources: list[str], dpis: list[float], chunk: int, work: Path,
                 preamble: str) -> None:
    """Typeset ``sources[j]`` for ``j`` in ``left`` with ``preamble`` into ``out[j]`` (None where it fails)."""
    pending = [left[i:i + chunk] for i in range(0, len(left), chunk)]
    while pending:
        idx = pending.pop()
        pdf, bad = _compile([sources[j] for j in idx], work, preamble)
        crops = _rasterise(pdf, [dpis[j] for j in idx]) if pdf is not None else None
        if crops is not None and bad is not None and (len(idx) == 1 or any(c is not None for c in crops)):
            for k, (j, c) in enumerate(zip(idx, crops, strict=True)):
                out[j] = None if k in bad else c
        elif len(idx) > 1:  # the pages cannot be told apart: halve until they can
            half = len(idx) // 2
            pending += [idx[:half], idx[half:]]
