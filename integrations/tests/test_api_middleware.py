"""The API fast path skips the browser middleware for /api/ requests only;
the throttle's cache comes from the environment and fails open."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from integrations.api.middleware import ApiFastPathEnd, ApiFastPathMiddleware
from integrations.tests.api_fixtures import PartnerHttp

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_api_requests_skip_sessions_and_csp_but_keep_the_safety_headers(partner):
    # when
    response = partner.get("/api/v1/programs/")
    # then
    assert response.status_code == 200
    assert "Set-Cookie" not in response and not response.cookies
    assert "Content-Security-Policy" not in response
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"] == "no-store"
    assert response["X-Request-ID"]


@pytest.mark.django_db
def test_api_request_without_a_key_is_still_401(db):
    response = PartnerHttp(None).get("/api/v1/programs/")
    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/problem+json")


@pytest.mark.django_db
def test_swagger_ui_and_pages_keep_the_browser_middleware(client):
    # Swagger UI is loaded by browsers: it keeps its CSP
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200
    assert "Content-Security-Policy" in docs
    # any page outside /api/ too
    login = client.get("/login/")
    assert "Content-Security-Policy" in login
    assert "camera=()" in login["Permissions-Policy"]


def test_the_fast_path_needs_its_end_marker():
    with pytest.raises(ImproperlyConfigured):
        ApiFastPathMiddleware(lambda request: None)


def test_the_fast_path_jumps_to_what_follows_the_end_marker(rf, settings):
    # given a chain: fast path -> browser middleware -> end marker -> view
    calls = []

    def view(request):
        calls.append("view")
        from django.http import HttpResponse

        return HttpResponse("ok")

    class Browser:
        def __init__(self, get_response):
            self.get_response = get_response

        def __call__(self, request):
            calls.append("browser")
            return self.get_response(request)

    chain = ApiFastPathMiddleware(Browser(ApiFastPathEnd(view)))
    # when / then
    chain(rf.get("/api/v1/programs/"))
    assert calls == ["view"]
    calls.clear()
    chain(rf.get("/console/"))
    assert calls == ["browser", "view"]
    calls.clear()
    chain(rf.get("/api/v1/docs/"))
    assert calls == ["browser", "view"]


def _caches(**env):
    """settings.CACHES as configured from `env` (a fresh interpreter)."""
    script = (
        "import json, django; django.setup(); from django.conf import settings; "
        "print(json.dumps(settings.CACHES['default']))"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CACHE_URL")}
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_caches_default_to_local_memory_and_use_redis_when_configured():
    assert _caches()["BACKEND"].endswith("LocMemCache")
    redis = _caches(REDIS_URL="redis://cache.internal:6379/1")
    assert redis["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert redis["LOCATION"] == "redis://cache.internal:6379/1"
    assert _caches(CACHE_URL="redis://other:6379/2")["LOCATION"] == "redis://other:6379/2"


@pytest.mark.django_db
def test_throttle_lets_requests_through_when_the_cache_is_down(partner, monkeypatch):
    # given a cache whose every call fails
    from integrations.throttling import ApiClientRateThrottle

    class Down:
        def get(self, *args, **kwargs):
            raise ConnectionError("cache down")

        set = get

    monkeypatch.setattr(ApiClientRateThrottle, "cache", Down())
    # when / then
    assert partner.get("/api/v1/programs/").status_code == 200


def _redis_or_skip():
    import socket

    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        pytest.skip("no Redis at 127.0.0.1:6379: the shared-counter test needs one")


@pytest.mark.django_db
def test_with_redis_two_workers_share_one_throttle_budget(partner, settings, monkeypatch):
    # given: two gunicorn workers, each with its own RedisCache client on the
    # same Redis, and a budget of 4 requests per minute for the key
    _redis_or_skip()
    import uuid

    from django.core.cache.backends.redis import RedisCache

    from integrations.throttling import ApiClientRateThrottle

    prefix = f"baton-test-{uuid.uuid4().hex}"
    workers = [RedisCache("redis://127.0.0.1:6379/15", {"KEY_PREFIX": prefix}) for _ in range(2)]
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_client": "4/min"},
    }
    statuses = []
    try:
        # when: requests alternate between the two workers
        for i in range(6):
            monkeypatch.setattr(ApiClientRateThrottle, "cache", workers[i % 2])
            statuses.append(partner.get("/api/v1/programs/").status_code)
    finally:
        workers[0].clear()
    # then: the budget is the key's, not each worker's: the 5th is refused
    assert statuses == [200, 200, 200, 200, 429, 429]


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_is_411_not_read_as_empty(live_server, org):
    # given: a partner client streaming its body (Transfer-Encoding: chunked,
    # no Content-Length); Django read it as empty and answered 422 "field
    # required" for every field, and a 1.05 MiB stream got that too, not 413
    import httpx

    from integrations.tests.api_fixtures import make_key

    _client, key = make_key(org)
    body = json.dumps({"id": "c-1", "type": "device.synced", "external_ref": "EHR-1"}).encode()

    def chunks():
        yield body[:10]
        yield body[10:]

    # when
    response = httpx.post(
        f"{live_server.url}/api/v1/events/",
        content=chunks(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    # then
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == 411
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert "Content-Length" in response.json()["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/programs", "/api/v1/nope/", "/api/v1/enrollments/abc/"])
def test_with_debug_on_an_unknown_api_path_is_still_problem_json(partner, settings, path):
    # given: DEBUG (as `make demo` runs) answered these with Django's HTML
    # debug page, which lists every URL pattern
    settings.DEBUG = True

    response = partner.get(path)

    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/problem+json")
    assert response.json()["instance"] == path
