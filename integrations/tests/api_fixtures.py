"""Fixtures for partner API tests: keys and an HTTP client that sends them.

Registered for every test by `pytest_plugins` in the root conftest.py.
"""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from integrations.auth import api_client_create
from programs.actors import Actor


class PartnerHttp:
    """A DRF test client that sends one API key and JSON bodies."""

    def __init__(self, raw_key: str | None):
        self.http = APIClient()
        if raw_key:
            self.http.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")

    def get(self, path, params=None, **extra):
        return self.http.get(path, params or {}, **extra)

    def post(self, path, body=None, *, idempotency_key=None, raw=None, **extra):
        if idempotency_key is not None:
            extra["HTTP_IDEMPOTENCY_KEY"] = idempotency_key
        content_type = extra.pop("content_type", "application/json")
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.http.generic("POST", path, data, content_type=content_type, **extra)


def make_key(organization, *, programs=(), read_only=False, expires_at=None, name="partner"):
    client, raw = api_client_create(
        organization=organization,
        name=name,
        programs=programs,
        read_only=read_only,
        expires_at=expires_at,
        actor=Actor.system("test"),
    )
    return client, raw


@pytest.fixture
def write_key(org):
    return make_key(org, name="EHR referrals")


@pytest.fixture
def partner(write_key):
    return PartnerHttp(write_key[1])


@pytest.fixture
def other_partner(other_org):
    return PartnerHttp(make_key(other_org, name="other org")[1])


def problem(response) -> dict:
    assert response["Content-Type"].startswith("application/problem+json"), response.content
    return json.loads(response.content)


@pytest.fixture(autouse=True)
def _fresh_throttle_counters():
    """Throttle counters live in the cache and key on the client id, which a
    later test may reuse (rolled back ids): start and end every test clean."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()
