"""A short middleware path for partner API requests.

Partner requests carry a bearer key and get JSON back: sessions, CSRF
cookies, the signed-in user, OTP, idle logoff, the MFA gate, flash
messages, django-axes (login lockout), CSP and static files do nothing for
them but cost time on every request. In MIDDLEWARE, the browser group sits
between `ApiFastPathMiddleware` and `ApiFastPathEnd`:

    RequestIdMiddleware, SecurityMiddleware, ApiFastPathMiddleware,
    <browser middleware ...>, ApiFastPathEnd

A request under `API_FAST_PATH_PREFIX` (default `/api/`), except the paths
in `API_FAST_PATH_EXCLUDE` (Swagger UI and the schema, which browsers load),
jumps from `ApiFastPathMiddleware` straight to what follows `ApiFastPathEnd`;
everything else walks the whole group. Middleware before the group (request
id, SecurityMiddleware: HSTS, SSL redirect, nosniff, referrer policy) runs
for every request. API responses still get `X-Frame-Options: DENY` and
`Cache-Control: no-store` (they may carry enrollment data).

`process_view` hooks of the skipped middleware still run (Django calls them
from the URL resolver): only CsrfViewMiddleware has one, and DRF views are
CSRF exempt. A trailing-slash redirect (CommonMiddleware) does not happen
for API paths: a URL without its slash is a 404. A body sent without
Content-Length (chunked) is a 411 here, before any view reads it as empty.
With DEBUG on, a 4xx Django rendered as its HTML debug page (a URL that
resolves to nothing) becomes problem+json too, as the guide promises.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from integrations.problems import length_required_problem, problem_for_debug_page


class ApiFastPathEnd:
    """Marks the end of the group skipped for API requests (a pass-through)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)


def _after_end_marker(handler):
    """Follow the middleware chain below `handler` to `ApiFastPathEnd` and
    return what it calls next. Django wraps each middleware in a function
    carrying `__wrapped__`; each middleware keeps `get_response`."""
    seen = 0
    while handler is not None and seen < 100:
        seen += 1
        middleware = getattr(handler, "__wrapped__", handler)
        if isinstance(middleware, ApiFastPathEnd):
            return middleware.get_response
        handler = getattr(middleware, "get_response", None)
    raise ImproperlyConfigured(
        "ApiFastPathMiddleware needs integrations.api.middleware.ApiFastPathEnd later in MIDDLEWARE"
    )


class ApiFastPathMiddleware:
    """Sends partner API requests past the browser middleware (see module doc)."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.api_response = _after_end_marker(get_response)
        self.prefix = getattr(settings, "API_FAST_PATH_PREFIX", "/api/")
        self.exclude = tuple(getattr(settings, "API_FAST_PATH_EXCLUDE", ()))

    def __call__(self, request):
        path = request.path_info
        if not path.startswith(self.prefix) or (self.exclude and path.startswith(self.exclude)):
            return self.get_response(request)
        response = length_required_problem(request) or self.api_response(request)
        if settings.DEBUG:
            response = problem_for_debug_page(request, response)
        if "X-Frame-Options" not in response:
            response["X-Frame-Options"] = "DENY"
        if "Cache-Control" not in response:
            response["Cache-Control"] = "no-store"
        return response
