"""Signal receivers that write the access audit trail.

Django's auth signals (login, logout, failed login) and django-axes'
`user_locked_out` each produce exactly one audit row per occurrence.
Receivers run inside the request, so the row carries its IP, user agent and
request id.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import pre_save

from programs.security import audit
from programs.security.policy import mfa_state
from programs.security.sessions import AUTH_AT, LAST_SEEN


def on_logged_in(sender, request, user, **kwargs):
    now = time.time()
    if request is not None and hasattr(request, "session"):
        request.session[AUTH_AT] = now
        request.session[LAST_SEEN] = now
        mfa_state(request, user=user, refresh=True)
    method = getattr(request, "_baton_mfa_method", None)
    audit.audit_access(
        request=request,
        action=audit.LOGIN,
        actor=user,
        object_type="auth.user",
        object_id=user.pk,
        metadata={"mfa": method or "none"},
    )


def on_logged_out(sender, request, user, **kwargs):
    if user is None:
        return  # an anonymous visitor pressed "sign out"
    reason = getattr(request, "_baton_logout_reason", None)
    audit.audit_access(
        request=request,
        action=audit.SESSION_EXPIRED if reason else audit.LOGOUT,
        actor=user,
        object_type="auth.user",
        object_id=user.pk,
        reason=f"{reason} timeout" if reason else "",
    )


def on_login_failed(sender, credentials, request=None, **kwargs):
    if request is None:
        return  # in-process authenticate() (shell, test client); nothing reached us
    username = str(credentials.get("username", ""))[:150]
    user = get_user_model().objects.filter(username=username).only("pk").first()
    locked = bool(getattr(request, "axes_locked_out", False))
    audit.audit_access(
        request=request,
        action=audit.LOGIN_FAILED,
        actor=audit.anonymous_actor(username),
        object_type="auth.user" if user else "",
        object_id=user.pk if user else "",
        reason="locked out" if locked else "wrong username or password",
        metadata={"username": username, "locked_out": locked},
    )


def on_locked_out(sender, request, username, ip_address, **kwargs):
    # axes sends this on the failure that reaches the limit and again on every
    # attempt while locked; only the first starts a lockout (the others are
    # failed logins with locked_out=true).
    if getattr(request, "axes_failures_since_start", None) != settings.AXES_FAILURE_LIMIT:
        return
    audit.audit_access(
        request=request,
        action=audit.LOCKED_OUT,
        actor=audit.anonymous_actor(username or ""),
        reason=f"{settings.AXES_FAILURE_LIMIT} failed logins",
        metadata={"username": username, "ip_address": ip_address},
    )


def on_user_pre_save(sender, instance, **kwargs):
    """Mark whether this save sets a first password (see passwords.py)."""
    if getattr(instance, "_password", None) is None:
        instance._baton_first_password = True
        return
    if instance.pk is None:
        instance._baton_first_password = True
        return
    old = sender.objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    instance._baton_first_password = not old or old.startswith("!")


def connect():
    from axes.signals import user_locked_out

    user_logged_in.connect(on_logged_in, dispatch_uid="security_logged_in")
    user_logged_out.connect(on_logged_out, dispatch_uid="security_logged_out")
    user_login_failed.connect(on_login_failed, dispatch_uid="security_login_failed")
    user_locked_out.connect(on_locked_out, dispatch_uid="security_locked_out")
    pre_save.connect(on_user_pre_save, sender=get_user_model(), dispatch_uid="security_pw")
