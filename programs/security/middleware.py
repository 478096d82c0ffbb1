"""Security middleware: CSP per path, automatic logoff, the MFA gate, and
response headers for shared workstations."""

from __future__ import annotations

import time
from urllib.parse import urlencode

from csp.middleware import CSPMiddleware
from django.conf import settings
from django.contrib.auth import logout
from django.core.exceptions import BadRequest
from django.http import HttpResponseRedirect
from django.urls import reverse

from programs.security import sessions
from programs.security.policy import mfa_state
from programs.security.request_meta import reset_current_request, set_current_request

# Paths a signed-in user may reach before finishing the second factor.
_ALWAYS_OPEN = ("/static/", "/healthz", "/readyz", "/favicon.ico")


def _login_redirect(request, **extra) -> HttpResponseRedirect:
    query = {"next": request.get_full_path(), **extra}
    return HttpResponseRedirect(f"{settings.LOGIN_URL}?{urlencode(query)}")


class BatonCSPMiddleware(CSPMiddleware):
    """django-csp's middleware plus per-path relaxations.

    `CSP_PATH_OVERRIDES = {"/api/v1/docs/": {"style-src": [...]}}` replaces
    those directives for requests under that prefix only (e.g. Swagger UI);
    every other page gets CONTENT_SECURITY_POLICY unchanged.
    """

    def get_policy_parts(self, request, response, report_only=False):
        parts = super().get_policy_parts(request, response, report_only)
        if report_only:
            return parts
        for prefix, directives in getattr(settings, "CSP_PATH_OVERRIDES", {}).items():
            if request.path_info.startswith(prefix):
                parts.replace = {**directives, **(parts.replace or {})}
        return parts


class SessionTimeoutMiddleware:
    """Automatic logoff: idle timeout and absolute session lifetime.

    Signs the user out (audited as `auth.session_expired`) once
    SESSION_IDLE_TIMEOUT has passed since their last request, or
    SESSION_ABSOLUTE_TIMEOUT since they signed in, and sends browsers to the
    login page. The session-status poll of idle.js (GET) does not count as
    activity; everything else does.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            now = time.time()
            session = request.session
            if sessions.AUTH_AT not in session:  # sessions from before this control
                session[sessions.AUTH_AT] = now
                session[sessions.LAST_SEEN] = now
            reason = sessions.expiry_reason(session, now)
            if reason:
                request._baton_logout_reason = reason
                logout(request)  # audited by receivers.on_logged_out
                if not self._is_status_poll(request) and not request.path.startswith("/api/"):
                    return _login_redirect(request, expired=reason)
            elif (
                not self._is_status_poll(request)
                and now - session.get(sessions.LAST_SEEN, 0) >= sessions.TOUCH_EVERY_SECONDS
            ):
                session[sessions.LAST_SEEN] = now
        return self.get_response(request)

    @staticmethod
    def _is_status_poll(request) -> bool:
        return request.method == "GET" and request.path == reverse("security:session")


class MFARequiredMiddleware:
    """Sends a signed-in user who still owes a second factor to finish it.

    Applies when the user must use MFA (organization setting, or superuser in
    production) or has enrolled an authenticator: without a device they go to
    enrollment, with one to the code step. Nothing else is reachable until then.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self._open = None

    def _open_paths(self):
        if self._open is None:
            self._open = (
                *_ALWAYS_OPEN,
                reverse("security:login"),
                reverse("security:login_verify"),
                reverse("security:logout"),
                reverse("admin:logout"),
                reverse("security:mfa_setup"),
                reverse("security:session"),
            )
        return self._open

    def __call__(self, request):
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and not user.is_verified()
            and not request.path.startswith(self._open_paths())
        ):
            state = mfa_state(request)
            query = urlencode({"next": request.get_full_path()})
            if state["device"]:
                return HttpResponseRedirect(f"{reverse('security:login_verify')}?{query}")
            if state["required"]:
                return HttpResponseRedirect(f"{reverse('security:mfa_setup')}?{query}")
        return self.get_response(request)


class SecurityHeadersMiddleware:
    """Headers for shared workstations, and the current request for audit hooks.

    Signed-in pages are `Cache-Control: no-store` so the back button on a
    shared computer shows nothing after logoff. Adds a Permissions-Policy
    that turns off device APIs Baton never uses.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = set_current_request(request)
        try:
            response = self.get_response(request)
        finally:
            reset_current_request(token)
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and "Cache-Control" not in response
            and not request.path.startswith("/static/")
        ):
            response["Cache-Control"] = "no-store"
        response.setdefault(
            "Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
        )
        return response


class RejectNulCharacterMiddleware:
    """400 for a query string holding a NUL character (`%00`).

    No page of Baton takes one, and PostgreSQL stores none: a filter such as
    `?state=%00` (which any admin changelist accepts for any field) reached
    the database and failed there, a 500. Forms already refuse NUL
    characters (Django's ProhibitNullCharactersValidator); the partner API
    answers its own 422. This is the browser group's part.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "%00" in request.META.get("QUERY_STRING", ""):
            raise BadRequest("the query string holds a NUL character (%00)")
        return self.get_response(request)
