"""Markdown a vendor can post that python-markdown handled in quadratic time (a paragraph of
thousands of `[` took 75 s while the request held its transaction) or not at all (thousands of
nested list markers: RecursionError, a 500). Both now render as the text that was typed.
(Timings are measured by hand, not here: 75 s -> 0.5 s for "[" * 20000 on the 2-core machine.)"""
from __future__ import annotations

import html

from guides import rendering
from guides.rendering import render_markdown


def test_a_paragraph_of_thousands_of_brackets_is_parsed_as_text(monkeypatch):
    seen = []
    real = rendering.markdown.markdown
    monkeypatch.setattr(rendering.markdown, "markdown", lambda text, **kw: seen.append(text) or real(text, **kw))
    out = render_markdown("[" * 5000)
    assert "[" not in seen[0]  # the link pattern never sees them
    assert html.unescape(out) == "<p>" + "[" * 5000 + "</p>"
    out = render_markdown("<a " * 2000)
    assert "<a" not in out.replace("&lt;a", "") and html.unescape(out).count("<a ") == 2000


def test_ordinary_links_and_html_in_other_paragraphs_still_work():
    text = "See [the guide](https://example.org/g).\n\n" + "[" * 500 + "\n\nand <b>bold</b> [x](https://e.org/x)"
    out = render_markdown(text)
    assert '<a href="https://example.org/g"' in out and '<a href="https://e.org/x"' in out and "<b>bold</b>" in out


def test_thousands_of_nested_list_markers_render_as_escaped_text_not_a_500():
    out = render_markdown("- " * 10000 + "$x^2$")
    assert out.startswith("<p>- - - ") and 'data-latex="x^2"' in out
