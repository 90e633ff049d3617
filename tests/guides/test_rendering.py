"""The Markdown renderer keeps formatting and LaTeX and drops every known XSS vector."""
import re

import pytest
from lxml import html as lxml_html

from guides.rendering import diff_html, render_markdown

# (name, payload). Each is written into a guide body as-is.
XSS_PAYLOADS = [
    ("script tag", "<script>alert('xss')</script>"),
    ("script tag, odd casing", "<ScRiPt>alert(1)</sCrIpT>"),
    ("script with src", '<script src="https://evil.example/x.js"></script>'),
    ("img onerror", '<img src=x onerror="alert(1)">'),
    ("img onerror without quotes", "<img src=x onerror=alert(1)//>"),
    ("svg onload", "<svg onload=alert(1)>"),
    ("svg with script", "<svg><script>alert(1)</script></svg>"),
    ("body onload", "<body onload=alert(1)>"),
    ("javascript: link (html)", '<a href="javascript:alert(1)">click</a>'),
    ("javascript: link (markdown)", "[click](javascript:alert(1))"),
    ("javascript: link, mixed casing", '<a href="JaVaScRiPt:alert(1)">click</a>'),
    ("javascript: link, entity-encoded", '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;:alert(1)">x</a>'),
    ("javascript: link, hex entities", '<a href="&#x6A;avascript&#x3A;alert(1)">x</a>'),
    ("javascript: link, tab inside", '<a href="jav&#x09;ascript:alert(1)">x</a>'),
    ("javascript: link, leading spaces", '<a href="   javascript:alert(1)">x</a>'),
    ("vbscript: link", '<a href="vbscript:msgbox(1)">x</a>'),
    ("data: link with html", '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>'),
    ("data: image (markdown)", "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)"),
    ("style expression", '<div style="width: expression(alert(1))">x</div>'),
    ("style url javascript", '<p style="background:url(javascript:alert(1))">x</p>'),
    ("style tag", "<style>body{background:url('javascript:alert(1)')}</style>"),
    ("iframe", '<iframe src="https://evil.example"></iframe>'),
    ("iframe srcdoc", '<iframe srcdoc="<script>alert(1)</script>"></iframe>'),
    ("object", '<object data="https://evil.example/x.swf"></object>'),
    ("embed", '<embed src="https://evil.example/x.swf">'),
    ("form action", '<form action="javascript:alert(1)"><button>go</button></form>'),
    ("input autofocus onfocus", "<input autofocus onfocus=alert(1)>"),
    ("meta refresh", '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">'),
    ("link stylesheet", '<link rel="stylesheet" href="https://evil.example/x.css">'),
    ("base href", '<base href="https://evil.example/">'),
    ("details ontoggle", "<details open ontoggle=alert(1)>"),
    ("a onmouseover", '<a href="https://ok.example" onmouseover="alert(1)">hover</a>'),
    ("math/latex breakout", "$\"><img src=x onerror=alert(1)>$"),
    ("display math breakout", "$$</span><script>alert(1)</script>$$"),
    ("markdown link title breakout", '[x](https://ok.example "a\\" onmouseover=\\"alert(1)")'),
    ("html comment trick", "<!--<img src=x onerror=alert(1)>-->"),
    ("noscript mutation", '<noscript><p title="</noscript><img src=x onerror=alert(1)>">'),
    ("textarea mutation", "<textarea><img src=x onerror=alert(1)></textarea>"),
]

DANGEROUS_TAGS = {"script", "style", "iframe", "object", "embed", "form", "input", "meta", "link", "base", "svg",
                  "body", "details", "noscript", "textarea", "button"}
URL_ATTRS = {"href", "src", "action", "formaction", "xlink:href", "data"}


def _assert_safe(rendered: str) -> None:
    tree = lxml_html.fragment_fromstring(rendered or "<span></span>", create_parent="div")
    for el in tree.iter():
        if not isinstance(el.tag, str):
            continue
        assert el.tag.lower() not in DANGEROUS_TAGS, (el.tag, rendered)
        for name, value in el.attrib.items():
            lowered = name.lower()
            assert not lowered.startswith("on"), (name, rendered)
            assert lowered != "style", rendered
            assert lowered not in {"srcdoc", "http-equiv"}, rendered
            if lowered in URL_ATTRS:
                scheme = re.sub(r"[\x00-\x20]", "", value).split(":", 1)[0].lower() if ":" in value else ""
                assert scheme in {"", "http", "https", "mailto"}, (name, value, rendered)


@pytest.mark.parametrize("name,payload", XSS_PAYLOADS, ids=[n for n, _ in XSS_PAYLOADS])
def test_known_xss_payload_is_neutralised(name, payload):
    rendered = render_markdown(f"Before the payload.\n\n{payload}\n\nAfter the payload.")
    _assert_safe(rendered)
    assert "After the payload." in rendered  # the rest of the guide survives


def test_xss_payload_list_covers_at_least_twenty_vectors():
    assert len(XSS_PAYLOADS) >= 20


def test_markdown_formatting_and_safe_links_survive():
    rendered = render_markdown("# Title\n\n**bold** and *it*\n\n- one\n- two\n\n[docs](https://ok.example/x)")
    tree = lxml_html.fragment_fromstring(rendered, create_parent="div")
    assert tree.find("h1").text == "Title"
    assert tree.find(".//strong").text == "bold"
    assert [li.text for li in tree.findall(".//li")] == ["one", "two"]
    link = tree.find(".//a")
    assert link.get("href") == "https://ok.example/x"
    assert "noopener" in link.get("rel")


def test_latex_is_preserved_for_katex_not_mangled_by_markdown():
    rendered = render_markdown(r"Inline $x_1^2 + y_*$ and display $$\frac{a_1}{b_2} < c$$ here.")
    tree = lxml_html.fragment_fromstring(rendered, create_parent="div")
    spans = tree.findall(".//span[@class]")
    assert [(s.get("data-latex"), s.get("data-display")) for s in spans] == [
        ("x_1^2 + y_*", "false"), (r"\frac{a_1}{b_2} < c", "true")]
    assert "<em>" not in rendered  # `_..._` inside maths is not emphasis


def test_dollar_inside_code_stays_literal():
    rendered = render_markdown("Use `$x$` literally; it costs $5 and $6.")
    assert "<code>$x$</code>" in rendered
    assert "data-latex" not in rendered


def test_diff_shows_changed_lines_and_escapes_payloads():
    html = diff_html("keep\nold line\n", "keep\nnew <script>alert(1)</script> line\n", old_label="v1", new_label="v2")
    _assert_safe(html)
    assert "old" in html and "new" in html
    assert "&lt;script&gt;" in html


def test_the_safety_check_flags_unsanitised_markdown_output():
    """Without nh3 most payloads get through python-markdown: the check above is sharp."""
    import markdown

    flagged = 0
    for _, payload in XSS_PAYLOADS:
        try:
            _assert_safe(markdown.markdown(payload))
        except AssertionError:
            flagged += 1
    assert flagged >= 25
