"""Security headers and the Content Security Policy on every page kind, and
`check --deploy` with production settings."""

import os
import re
import secrets
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.urls import reverse

ROOT = Path(__file__).resolve().parents[2]


class _Scripts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.inline_scripts = []
        self.handler_attrs = []
        self.style_attrs = []
        self._in_inline = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and "src" not in attrs and attrs.get("type") != "application/json":
            self._in_inline = True
            self.inline_scripts.append("")
        self.handler_attrs += [k for k in attrs if k.startswith("on")]
        if "style" in attrs:
            self.style_attrs.append(tag)
        for key in ("href", "action", "src"):
            if (attrs.get(key) or "").strip().lower().startswith("javascript:"):
                self.handler_attrs.append(key)

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_inline = False


def _csp(response) -> dict:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


def console_pages(item_pk=None):
    pages = ["/console/queue/mine/", "/console/queue/open/", "/console/programs/"]
    pages += ["/security/mfa/", "/security/mfa/setup/", "/security/password/", "/security/audit/"]
    if item_pk:
        pages.append(reverse("console:item", args=[item_pk]))
    return pages


@pytest.fixture
def open_item(org, program):
    from programs.actors import Actor
    from programs.services import exception_raise

    item, _ = exception_raise(
        organization=org, kind="manual", title="Check", dedup_key="k1", actor=Actor.system("t")
    )
    return item


@pytest.mark.django_db
def test_every_console_page_has_a_strict_csp_and_no_inline_script(client, lead, open_item):
    # given
    from programs.services import membership_grant

    membership_grant(user=lead, organization=open_item.organization, role="admin", actor=lead)
    client.force_login(lead)
    for url in console_pages(open_item.pk):
        # when
        response = client.get(url)
        # then
        assert response.status_code == 200, url
        policy = _csp(response)
        assert policy["script-src"] == ["'self'"], url
        assert "'unsafe-inline'" not in policy["style-src"], url
        assert policy["frame-ancestors"] == ["'none'"], url
        assert policy["object-src"] == ["'none'"], url
        parser = _Scripts()
        parser.feed(response.content.decode())
        assert parser.inline_scripts == [], url
        assert parser.handler_attrs == [], url
        assert parser.style_attrs == [], url


@pytest.mark.django_db
def test_login_and_admin_pages_carry_the_policy_and_the_other_headers(client, admin_user):
    for url in ("/login/",):
        response = client.get(url)
        assert "Content-Security-Policy" in response
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"
        assert "camera=()" in response["Permissions-Policy"]
    client.force_login(admin_user)
    for url in ("/admin/", "/admin/programs/program/", "/admin/programs/program/add/"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert _csp(response)["script-src"] == ["'self'"]


@pytest.mark.django_db
def test_the_admin_changelist_inline_style_matches_the_allowed_hash(client, admin_user):
    # Django's change_list.html has one inline <style> when a list has no
    # actions; its sha256 is in style-src instead of 'unsafe-inline'.
    import base64
    import hashlib

    from django.contrib import admin

    from programs.models import JobHeartbeat

    client.force_login(admin_user)
    model_admin = admin.site._registry[JobHeartbeat]
    actions_before = model_admin.actions
    model_admin.actions = None
    try:
        response = client.get("/admin/programs/jobheartbeat/")
    finally:
        model_admin.actions = actions_before
    styles = re.findall(r"<style>(.*?)</style>", response.content.decode(), re.S)
    allowed = _csp(response)["style-src"]
    for body in styles:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in allowed


@pytest.mark.django_db
def test_login_form_posts_only_to_self_and_cookies_are_httponly_and_samesite(client, coordinator):
    from programs.tests.factories import TEST_PASSWORD

    response = client.post("/login/", {"username": coordinator.username, "password": TEST_PASSWORD})
    cookie = response.cookies["sessionid"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"


def test_check_deploy_is_clean_with_production_settings():
    # given: production settings from the environment only
    # (the browser tests' DJANGO_ALLOW_ASYNC_UNSAFE belongs to the test process only)
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DJANGO_ENV": "production",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "baton.example.com",
        "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/baton"),
    }
    # when
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # then
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
