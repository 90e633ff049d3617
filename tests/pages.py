"""Helpers for page tests: read what a rendered page shows beside a form field."""
from __future__ import annotations

import re
from html import unescape


def field_errors(response, field_id: str) -> str:
    """The text of the error list rendered right after the field `field_id` (e.g. "id_vendor")."""
    html = response.content.decode()
    match = re.search(rf'<ul class="errorlist" id="{re.escape(field_id)}_errors"[^>]*>(.*?)</ul>', html, re.S)
    return unescape(re.sub(r"<[^>]+>", " ", match.group(1))).strip() if match else ""


def cell_errors(response, field_name: str) -> str:
    """Errors rendered in the same table cell as the input named `field_name` (formset rows)."""
    html = response.content.decode()
    match = re.search(rf'<td[^>]*>(?:(?!</td>).)*name="{re.escape(field_name)}"(?:(?!</td>).)*</td>', html, re.S)
    if not match:
        return ""
    errors = re.search(r'<ul class="errorlist"[^>]*>(.*?)</ul>', match.group(0), re.S)
    return unescape(re.sub(r"<[^>]+>", " ", errors.group(1))).strip() if errors else ""


def text(response) -> str:
    """The page as plain text, whitespace collapsed."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", response.content.decode(), flags=re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).strip()
