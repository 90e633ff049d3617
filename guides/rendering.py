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

# A tag in the sanitiser's output: every attribute value is double-quoted (a `>` may sit in
# one), and text never holds a raw `<`.
_TAG = re.compile(r'<(?:[^>"]|"[^"]*")*>')


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


# python-markdown's inline link, image and HTML patterns rescan the rest of a paragraph for every
# `[` or `<` that opens nothing, so a paragraph of thousands of them took minutes ("[" * 20000:
# 75 s; "[a](" * 5000: 6 s) while the request held its transaction. Real guide and question
# paragraphs hold a few links; past this many in one paragraph the characters are taken as text.
_MAX_OPENERS_PER_BLOCK = 200
_BLOCK_BREAK = re.compile(r"(\n[ \t]*\n)")


def _defuse(text: str) -> str:
    """`text` with the `[` and `<` of any paragraph holding more than `_MAX_OPENERS_PER_BLOCK` of
    them written as character references (shown the same, parsed as text)."""
    blocks = _BLOCK_BREAK.split(text)
    for i, block in enumerate(blocks):
        if block.count("[") > _MAX_OPENERS_PER_BLOCK:
            block = block.replace("[", "&#91;")
        if block.count("<") > _MAX_OPENERS_PER_BLOCK:
            block = block.replace("<", "&lt;")
        blocks[i] = block
    return "".join(blocks)


def render_markdown(text: str) -> str:
    """Render `text` (Markdown with `$...$` / `$$...$$` LaTeX) to sanitised HTML."""
    if not text:
        return ""
    nonce = secrets.token_hex(6)
    maths: list[tuple[str, str]] = []  # (span, TeX source as written)

    def lift(match: re.Match) -> str:
        if match.group("fence") or match.group("code"):
            return match.group(0)
        display = match.group("display") is not None
        maths.append((_math_span(match.group("display") if display else match.group("inline"), display),
                      match.group(0)))
        # Letters and digits only: survives Markdown and the sanitiser untouched.
        return f"MATH{nonce}X{len(maths) - 1}X"

    lifted = _defuse(_MATH_OR_CODE.sub(lift, text))
    try:
        rendered = markdown.markdown(lifted, extensions=_MD_EXTENSIONS, output_format="html")
    except RecursionError:
        # Thousands of nested list or quote markers on one line ("- - - - ..."): python-markdown
        # recurses once per level. Such a text is shown as it was typed, escaped, not as a 500.
        rendered = "<p>" + html.escape(lifted).replace("\n", "<br>") + "</p>"
    clean = sanitize_html(rendered)
    placeholder = re.compile(rf"MATH{nonce}X(\d+)X")

    def in_text(m: re.Match) -> str:
        return maths[int(m.group(1))][0]

    def in_tag(m: re.Match) -> str:
        return html.escape(maths[int(m.group(1))][1], quote=True)

    # The spans are built from escaped text after sanitising, so they add nothing unsafe in
    # text. Inside a tag (an attribute such as a link's title) a span's quotes would end the
    # attribute and add attributes the sanitiser never saw: there the TeX stays text.
    out, pos = [], 0
    for tag in _TAG.finditer(clean):
        out.append(placeholder.sub(in_text, clean[pos:tag.start()]))
        out.append(placeholder.sub(in_tag, tag.group(0)))
        pos = tag.end()
    out.append(placeholder.sub(in_text, clean[pos:]))
    return "".join(out)


def diff_html(old: str, new: str, *, old_label: str, new_label: str, context: int = 2) -> str:
    """A side-by-side HTML table of the lines that changed between two Markdown texts.

    Built from difflib.SequenceMatcher's line opcodes rather than HtmlDiff, whose
    character-level pass takes minutes on long guides. Every cell is escaped here,
    and the table still goes through the sanitiser so a payload can never ride along.
    """
    a, b = old.splitlines(), new.splitlines()
    rows = [f'<thead><tr><th colspan="2" class="diff_header">{html.escape(old_label)}</th>'
            f'<th colspan="2" class="diff_header">{html.escape(new_label)}</th></tr></thead><tbody>']

    def cell(n: int | None, text: str | None, css: str) -> str:
        number = "" if n is None else str(n + 1)
        body = "" if text is None else html.escape(text)
        return f'<td class="diff_header">{number}</td><td class="{css}">{body}</td>'

    groups = difflib.SequenceMatcher(None, a, b).get_grouped_opcodes(context)
    for g, group in enumerate(groups):
        if g:
            rows.append('<tr><td colspan="4" class="diff_sep">…</td></tr>')
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                    rows.append(f"<tr>{cell(i, a[i], '')}{cell(j, b[j], '')}</tr>")
                continue
            left, right = list(range(i1, i2)), list(range(j1, j2))
            for k in range(max(len(left), len(right))):
                i = left[k] if k < len(left) else None
                j = right[k] if k < len(right) else None
                css_old = "diff_chg" if tag == "replace" and j is not None else "diff_sub"
                css_new = "diff_chg" if tag == "replace" and i is not None else "diff_add"
                rows.append("<tr>" + cell(i, a[i] if i is not None else None, css_old if i is not None else "")
                            + cell(j, b[j] if j is not None else None, css_new if j is not None else "") + "</tr>")
    if len(rows) == 1:
        rows.append('<tr><td colspan="4" class="diff_same">No changes in the text.</td></tr>')
    table = '<table class="diff">' + "".join(rows) + "</tbody></table>"
    return nh3.clean(
        table,
        tags={"table", "thead", "tbody", "tr", "th", "td"},
        attributes={"table": {"class"}, "td": {"class", "colspan"}, "th": {"class", "colspan"}},
        url_schemes=set(),
        link_rel=None,
    )


def diff_unified(old: str, new: str, *, old_label: str, new_label: str) -> str:
    """A unified diff (plain text) between two Markdown texts."""
    return "".join(difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), fromfile=old_label, tofile=new_label,
    ))
