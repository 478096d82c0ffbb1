"""Who must use a second factor, and which devices a user has."""

from __future__ import annotations

from django.conf import settings
from django_otp import user_has_device

from programs.models import Membership


def mfa_required(user) -> bool:
    """True when `user` may not work without a verified second factor.

    Rules: a member of any organization with `require_mfa`; a superuser when
    BATON_MFA_REQUIRED_FOR_SUPERUSERS (on in production).
    """
    if user is None or not user.is_authenticated:
        return False
    if user.is_superuser and settings.BATON_MFA_REQUIRED_FOR_SUPERUSERS:
        return True
    return Membership.objects.filter(user=user, organization__require_mfa=True).exists()


def has_mfa_device(user) -> bool:
    """A confirmed authenticator app (recovery codes alone do not count)."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    if user is None or not user.is_authenticated:
        return False
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


__all__ = ["has_mfa_device", "mfa_required", "user_has_device"]


_SESSION_KEY = "_baton_mfa_state"
_RECHECK_SECONDS = 60


def mfa_state(request, *, user=None, refresh: bool = False) -> dict:
    """{"device": bool, "required": bool} for the signed-in user, kept in the
    session and re-read at most once a minute (so pages cost no extra queries,
    and an organization turning MFA on reaches open sessions within a minute)."""
    import time

    user = user if user is not None else request.user
    now = time.time()
    state = request.session.get(_SESSION_KEY)
    if refresh or not state or now - state.get("at", 0) >= _RECHECK_SECONDS:
        state = {
            "device": has_mfa_device(user),
            "required": mfa_required(user),
            "at": now,
        }
        request.session[_SESSION_KEY] = state
    return state
