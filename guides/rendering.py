"""Markdown to safe HTML for guides, answers and the FAQ; readable diffs of versions.

Everything a curator or vendor writes is rendered here and nowhere else, so the
sanitising policy lives in one place: python-markdown turns the text into HTML,
nh3 (ammonia) keeps only an allow-list of tags, attributes and URL schemes, and
LaTeX is lifted out *before* Markdown sees it (Markdown would eat `_` and `*`)
and put back afterwards as an escaped `data-latex` attribute that KaTeX renders
in the browser.
"""
from __future__ import annotations

import difflib
import html
import re
import secrets

import markdown
import nh3

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "div", "dl", "dt", "em", "h1", "h2", "h3",
    "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s", "span", "strong", "sub", "sup",
    "table", "tbody", "td", "th", "thead", "tr", "ul",
}
# No `style`, no `on*`, no `class` from the author: classes could restyle the page.
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"align"},
    "th": {"align"},
    "ol": {"start"},
}
# http(s) and mailto only: javascript:, vbscript:, data: (SVG with script) are dropped.
URL_SCHEMES = {"http", "https", "mailto"}

# Code is matched first so that a `$` inside code stays literal.
_MATH_OR_CODE = re.compile(
    r"(?P<fence>```.*?```|~~~.*?~~~)"
    r"|(?P<code>`[^`\n]+`)"
    r"|\$\$(?P<display>.+?)\$\$"
    r"|(?<![\\$])\$(?P<inline>[^\s$](?:[^$\n]*?[^\s$\\])?)\$(?!\d)",
    re.DOTALL,
)

_MD_EXTENSIONS = ["tables", "fenced_code", "sane_lists"]


def _math_span(latex: str, display: bool) -> str:
    latex = latex.strip()
    mode = "display" if display else "inline"
    escaped = html.escape(latex, quote=True)
    # The TeX source is also the fallback text when KaTeX is not available.
    return f'<span class="math math-{mode}" data-latex="{escaped}" data-display="{str(display).lower()}">{escaped}</span>'


def sanitize_html(fragment: str) -> str:
    """Keep only the allow-listed tags, attributes and URL schemes of `fragment`."""
    return nh3.clean(
        fragment,
        tags=ALLOWED_TAGS,
        clean_content_tags={"script", "style"},
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def render_markdown(text: str) -> str:
    """Render `text` (Markdown with `$...$` / `$$...$$` LaTeX) to sanitised HTML."""
    if not text:
        return ""
    nonce = secrets.token_hex(6)
    maths: list[str] = []

    def lift(match: re.Match) -> str:
        if match.group("fence") or match.group("code"):
            return match.group(0)
        display = match.group("display") is not None
        maths.append(_math_span(match.group("display") if display else match.group("inline"), display))
        # Letters and digits only: survives Markdown and the sanitiser untouched.
        return f"MATH{nonce}X{len(maths) - 1}X"

    lifted = _MATH_OR_CODE.sub(lift, text)
    rendered = markdown.markdown(lifted, extensions=_MD_EXTENSIONS, output_format="html")
    clean = sanitize_html(rendered)
    # The spans are built from escaped text after sanitising, so they add nothing unsafe.
    return re.sub(rf"MATH{nonce}X(\d+)X", lambda m: maths[int(m.group(1))], clean)


def diff_html(old: str, new: str, *, old_label: str, new_label: str) -> str:
    """A side-by-side HTML table of the lines that changed between two Markdown texts.

    difflib escapes the text itself; the result is still passed through the
    sanitiser (tables, spans and anchors only) so a payload can never ride along.
    """
    table = difflib.HtmlDiff(tabsize=4, wrapcolumn=80).make_table(
        old.splitlines(), new.splitlines(), fromdesc=html.escape(old_label), todesc=html.escape(new_label),
        context=True, numlines=2,
    )
    return nh3.clean(
        table,
        tags={"table", "colgroup", "col", "thead", "tbody", "tr", "th", "td", "span", "a", "br"},
        attributes={"table": {"class"}, "td": {"class", "nowrap", "colspan", "id"}, "th": {"class", "colspan"},
                    "span": {"class"}, "a": {"href", "id"}},
        url_schemes=set(),
        link_rel=None,
    )


def diff_unified(old: str, new: str, *, old_label: str, new_label: str) -> str:
    """A unified diff (plain text) between two Markdown texts."""
    return "".join(difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), fromfile=old_label, tofile=new_label,
    ))
