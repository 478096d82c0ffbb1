"""Sign-in (password, then a second factor), sign-out, MFA enrollment, the
session status endpoint of idle.js, password change, and the audit view."""

from __future__ import annotations

import csv
import json
import time

import segno
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import login as auth_login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods
from django_otp import login as otp_login
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from programs.security import audit, selectors, services, sessions
from programs.security.forms import AuditFilterForm, EnrollForm, LoginForm, TokenForm
from programs.security.policy import has_mfa_device, mfa_required
from programs.security.request_meta import request_meta

PENDING = "_baton_pending_login"
PENDING_TTL_SECONDS = 300
MAX_CODE_FAILURES = 5


def _safe_next(request, default=None) -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return default or settings.LOGIN_REDIRECT_URL


# --- Sign-in -----------------------------------------------------------------------


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
def login_view(request):
    """Step 1: username and password (throttled by django-axes).

    A user with an authenticator goes on to the code step and is only signed
    in once the code checks out; others are signed in now (and, if their
    organization requires MFA, sent to enrollment by MFARequiredMiddleware).
    """
    next_url = _safe_next(request)
    if request.user.is_authenticated and request.method == "GET" and request.user.is_verified():
        return redirect(next_url)
    form = LoginForm(request, data=request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.get_user()
        if has_mfa_device(user):
            request.session[PENDING] = {
                "user_id": user.pk,
                "backend": user.backend,
                "at": time.time(),
                "failures": 0,
            }
            return redirect(f"{reverse('security:login_verify')}?next={_quote(next_url)}")
        auth_login(request, user)
        return redirect(next_url)
    return render(
        request,
        "registration/login.html",
        {
            "form": form,
            "next": next_url,
            "expired": request.GET.get("expired", ""),
            "idle_minutes": int(settings.SESSION_IDLE_TIMEOUT.total_seconds() // 60),
        },
    )


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="/")


def _pending_user(request):
    pending = request.session.get(PENDING)
    if pending and time.time() - pending["at"] <= PENDING_TTL_SECONDS:
        user = get_user_model().objects.filter(pk=pending["user_id"], is_active=True).first()
        if user is not None:
            return user, pending
    request.session.pop(PENDING, None)
    if request.user.is_authenticated and not request.user.is_verified():
        return request.user, None
    return None, None


@sensitive_post_parameters("otp_token")
@csrf_protect
@never_cache
def login_verify_view(request):
    """Step 2: a code from the authenticator app, or a single-use recovery code."""
    user, pending = _pending_user(request)
    next_url = _safe_next(request)
    if user is None:
        messages.info(request, "Sign in again to continue.")
        return redirect(settings.LOGIN_URL)
    if not has_mfa_device(user):
        return redirect(f"{reverse('security:mfa_setup')}?next={_quote(next_url)}")
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        token = form.cleaned_data["otp_token"]
        device = _match(user, token)
        if device is None:
            audit.audit_access(
                request=request,
                action=audit.MFA_FAILED,
                actor=user,
                object_type="auth.user",
                object_id=user.pk,
                reason="wrong code at sign-in",
            )
            if pending is not None:
                pending["failures"] += 1
                request.session[PENDING] = pending
                if pending["failures"] >= MAX_CODE_FAILURES:
                    request.session.pop(PENDING, None)
                    messages.error(request, "Too many wrong codes. Sign in again.")
                    return redirect(settings.LOGIN_URL)
            form.add_error("otp_token", "That code is not valid. Codes change every 30 seconds.")
        else:
            method = "recovery_code" if isinstance(device, StaticDevice) else "totp"
            request._baton_mfa_method = method
            if pending is not None:
                request.session.pop(PENDING, None)
                auth_login(request, user, backend=pending["backend"])  # audited: auth.login
            otp_login(request, device)
            audit.audit_access(
                request=request,
                action=audit.MFA_VERIFIED,
                actor=user,
                target=device,
                metadata={"method": method, **_remaining_codes(user, method)},
            )
            if method == "recovery_code":
                messages.warning(
                    request,
                    "You signed in with a recovery code; it cannot be used again. "
                    "Generate new codes if you are running low.",
                )
            return redirect(next_url)
    return render(
        request, "registration/login_verify.html", {"form": form, "next": next_url, "who": user}
    )


def _remaining_codes(user, method) -> dict:
    if method != "recovery_code":
        return {}
    device = StaticDevice.objects.filter(user=user).first()
    return {"recovery_codes_left": device.token_set.count() if device else 0}


def _match(user, token):
    """The confirmed device that accepts `token` (each throttles its own failures)."""
    devices = [*TOTPDevice.objects.filter(user=user, confirmed=True)]
    devices += [*StaticDevice.objects.filter(user=user, confirmed=True)]
    for device in devices:
        if device.verify_token(token):
            return device
    return None


class LogoutView(auth_views.LogoutView):
    """POST only (Django 5); audited by the user_logged_out receiver."""

    next_page = settings.LOGOUT_REDIRECT_URL


# --- MFA enrollment ------------------------------------------------------------------


@login_required
@never_cache
def mfa_overview_view(request):
    totp = TOTPDevice.objects.filter(user=request.user, confirmed=True).first()
    static = StaticDevice.objects.filter(user=request.user).first()
    return render(
        request,
        "security/mfa_overview.html",
        {
            "totp": totp,
            "codes_left": static.token_set.count() if static else 0,
            "required": mfa_required(request.user),
        },
    )


@login_required
@sensitive_post_parameters("otp_token")
@never_cache
def mfa_setup_view(request):
    """Guided enrollment: scan the QR code, type a code, keep the recovery codes.

    A user who already has an authenticator must have verified it in this
    session before replacing it.
    """
    user = request.user
    if has_mfa_device(user) and not user.is_verified():
        return redirect(f"{reverse('security:login_verify')}?next={reverse('security:mfa_setup')}")
    device = services.mfa_totp_begin(user=user)
    form = EnrollForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        codes = services.mfa_totp_confirm(
            user=user,
            device_id=device.pk,
            token=form.cleaned_data["otp_token"],
            meta=request_meta(request),
        )
        if codes is not None:
            device.refresh_from_db()
            otp_login(request, device)
            return render(
                request,
                "security/recovery_codes.html",
                {"codes": codes, "next": _safe_next(request, reverse("security:mfa"))},
            )
        form.add_error("otp_token", "That code did not match. Check the time on your phone.")
    qr = segno.make(device.config_url, error="m")
    return render(
        request,
        "security/mfa_setup.html",
        {
            "form": form,
            "qr_svg": qr.svg_inline(scale=5, dark="#111", light="#fff"),
            "secret": _group(device.config_url.split("secret=")[1].split("&")[0]),
            "required": mfa_required(user),
            "next": _safe_next(request, reverse("security:mfa")),
        },
    )


def _group(secret: str) -> str:
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


@login_required
@require_http_methods(["POST"])
def mfa_recovery_codes_view(request):
    """Issue new recovery codes (needs a verified session)."""
    if not request.user.is_verified():
        raise PermissionDenied("Verify your second factor first.")
    codes = services.mfa_recovery_codes_regenerate(
        user=request.user, actor=request.user, meta=request_meta(request)
    )
    return render(
        request, "security/recovery_codes.html", {"codes": codes, "next": reverse("security:mfa")}
    )


# --- Session status (idle.js) ----------------------------------------------------------


@never_cache
@require_http_methods(["GET", "POST"])
def session_view(request):
    """GET: seconds left, without counting as activity. POST: "stay signed in"."""
    if not request.user.is_authenticated:
        return JsonResponse({"authenticated": False, "login_url": settings.LOGIN_URL}, status=401)
    if request.method == "POST":
        request.session[sessions.LAST_SEEN] = time.time()
    return JsonResponse({"authenticated": True, **sessions.remaining(request.session)})


class PasswordChangeView(auth_views.PasswordChangeView):
    """Audited by the AuditPasswordChange validator hook."""

    template_name = "security/password_change.html"
    success_url = reverse_lazy("security:mfa")

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Your password was changed.")
        return response


# --- Audit view and export --------------------------------------------------------------


def _auditor_only(view):
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect(f"{settings.LOGIN_URL}?next={_quote(request.get_full_path())}")
        if not selectors.can_read_audit(request.user):
            raise PermissionDenied("The audit trail is open to auditors and admins.")
        return view(request, *args, **kwargs)

    wrapper.__name__ = view.__name__
    wrapper.__doc__ = view.__doc__
    return wrapper


@_auditor_only
@never_cache
def audit_list_view(request):
    """Auditors' filtered view of the trail (their organizations only)."""
    form = AuditFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    events = selectors.audit_events(request.user, filters)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "security/audit_list.html",
        {"form": form, "page": page, "query": query.urlencode()},
    )


EXPORT_FIELDS = [
    "created_at",
    "organization_id",
    "actor_kind",
    "actor_id",
    "actor_label",
    "action",
    "object_type",
    "object_id",
    "from_state",
    "to_state",
    "reason",
    "request_id",
    "ip_address",
    "user_agent",
    "metadata",
]


class _Echo:
    def write(self, value):
        return value


def _cell(value) -> str:
    if value is None:
        text = ""
    elif isinstance(value, dict | list):
        text = json.dumps(value, sort_keys=True, default=str)  # metadata: JSON tools can read
    else:
        text = str(value)
    # Spreadsheet formula injection: never start a cell with = + - @ or a tab.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@_auditor_only
@never_cache
def audit_export_view(request):
    """CSV of the filtered trail. The export itself is audited (audit.exported)."""
    form = AuditFilterForm(request.GET or None)
    if request.GET and not form.is_valid():
        return render(
            request,
            "security/audit_list.html",
            {"form": form, "page": None, "query": ""},
            status=400,
        )
    filters = form.cleaned_data if request.GET else {}
    events = selectors.audit_events(request.user, filters)
    count = events.count()
    audit.audit_access(
        request=request,
        action=audit.AUDIT_EXPORTED,
        metadata={
            "filters": {k: str(v) for k, v in filters.items() if v not in (None, "")},
            "rows": count,
        },
    )
    writer = csv.writer(_Echo())

    def rows():
        yield writer.writerow(EXPORT_FIELDS)
        for event in events.values_list(*EXPORT_FIELDS).iterator(chunk_size=2000):
            yield writer.writerow([_cell(v) for v in event])

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="baton-audit.csv"'
    return response
