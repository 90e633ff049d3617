"""The Content-Security-Policy header (django-csp, configured in config/settings.py): present on the
pages with the directives that matter, switched to report-only by MATHSET_CSP_REPORT_ONLY, and kept
satisfiable by the templates (no inline script, no on*="..." handler). The browser side is
tests/browser/test_csp.py."""
from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from common import roles
from tests import factories

ROOT = Path(__file__).resolve().parent.parent.parent
HEADER, HEADER_RO = "Content-Security-Policy", "Content-Security-Policy-Report-Only"
EXPECTED = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self' 'unsafe-inline'",
    "img-src": "'self' data: blob:",
    "font-src": "'self' data:",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def directives(header: str) -> dict[str, str]:
    parts = (p.strip().split(None, 1) for p in header.split(";") if p.strip())
    return {p[0]: p[1] if len(p) > 1 else "" for p in parts}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/login/", "/specs/", "/api/docs/", "/api/v1/specs/"])
def test_pages_carry_the_strict_policy(client, path):
    client.force_login(factories.make_user(roles.CURATOR))
    response = client.get(path)
    assert response.status_code == 200
    assert HEADER_RO not in response
    assert directives(response[HEADER]) == EXPECTED  # exactly these: no 'unsafe-eval', no worker-src


@pytest.mark.django_db
def test_only_redoc_may_start_its_search_worker_from_a_blob(client):
    client.force_login(factories.make_user(roles.CURATOR))
    policy = directives(client.get("/api/redoc/")[HEADER])
    assert policy["worker-src"] == "'self' blob:"
    assert policy["script-src"] == "'self'"


@pytest.mark.django_db
def test_swagger_ui_loads_its_start_up_script_from_the_site_not_inline(client):
    client.force_login(factories.make_user(roles.CURATOR))
    html = client.get("/api/docs/").content.decode()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all('src="' in attrs and not body.strip() for attrs, body in scripts), scripts
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()


def test_report_only_setting_moves_the_policy_to_the_report_only_header(monkeypatch):
    monkeypatch.setenv("MATHSET_CSP_REPORT_ONLY", "1")
    report_only = runpy.run_path(str(ROOT / "config" / "settings.py"))
    assert report_only["CONTENT_SECURITY_POLICY"] is None
    assert report_only["CONTENT_SECURITY_POLICY_REPORT_ONLY"]["DIRECTIVES"]["script-src"] == ["'self'"]
    monkeypatch.delenv("MATHSET_CSP_REPORT_ONLY")
    enforced = runpy.run_path(str(ROOT / "config" / "settings.py"))
    assert enforced["CONTENT_SECURITY_POLICY"] == report_only["CONTENT_SECURITY_POLICY_REPORT_ONLY"]
    assert "CONTENT_SECURITY_POLICY_REPORT_ONLY" not in enforced


@pytest.mark.django_db
def test_report_only_mode_sends_the_report_only_header_and_no_enforcing_one(client, settings):
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = django_settings.CONTENT_SECURITY_POLICY
    settings.CONTENT_SECURITY_POLICY = None
    response = client.get("/accounts/login/")
    assert HEADER not in response
    assert directives(response[HEADER_RO]) == EXPECTED
    client.force_login(factories.make_user(roles.CURATOR))
    assert directives(client.get("/api/redoc/")[HEADER_RO])["worker-src"] == "'self' blob:"


def test_templates_have_no_inline_script_or_event_handler():
    """What the policy would refuse: a <script> without src (json_script data excepted) or on*="..."."""
    offenders = []
    for path in sorted((ROOT / "templates").rglob("*.html")) + sorted(ROOT.glob("*/templates/**/*.html")):
        html = path.read_text()
        for attrs in re.findall(r"<script\b([^>]*)>", html):
            if "src=" not in attrs and 'type="application/json"' not in attrs:
                offenders.append(f"{path.relative_to(ROOT)}: <script{attrs}>")
        offenders += [f"{path.relative_to(ROOT)}: {m}" for m in re.findall(r"\son[a-z]+\s*=\s*[\"']", html)]
        offenders += [f"{path.relative_to(ROOT)}: javascript: URL" for _ in re.findall(r"javascript:", html, re.I)]
    assert not offenders, offenders
