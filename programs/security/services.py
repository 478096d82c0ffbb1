"""Writes of access security: MFA enrollment, recovery codes, lifting lockouts.

Each runs in one transaction with its audit row (`programs.services.audit_record`).
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from programs.actors import as_actor
from programs.security import audit
from programs.security.request_meta import RequestMeta
from programs.services import audit_record

TOTP_NAME = "Authenticator app"
RECOVERY_NAME = "Recovery codes"


def mfa_totp_begin(*, user) -> TOTPDevice:
    """The user's pending (unconfirmed) authenticator, created on first call.

    Reused on reload so the QR code the user already scanned stays valid.
    Nothing is audited until the device is confirmed.
    """
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
    return device or TOTPDevice.objects.create(user=user, name=TOTP_NAME, confirmed=False)


@transaction.atomic
def mfa_totp_confirm(*, user, device_id: int, token: str, meta: RequestMeta) -> list[str] | None:
    """Confirm a pending authenticator with a code from it.

    On success the device becomes the user's only authenticator (older ones
    are removed), fresh recovery codes are issued, and `auth.mfa_enrolled` is
    audited; returns the recovery codes (shown once). A wrong code returns
    None and is audited as `auth.mfa_failed`.
    """
    device = TOTPDevice.objects.select_for_update().get(pk=device_id, user=user, confirmed=False)
    if not device.verify_token(token):
        audit_record(
            actor=user,
            action=audit.MFA_FAILED,
            target=device,
            reason="wrong code while enrolling",
            **meta.as_audit_kwargs(),
        )
        return None
    TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    audit_record(actor=user, action=audit.MFA_ENROLLED, target=device, **meta.as_audit_kwargs())
    return _issue_recovery_codes(user=user, actor=user, meta=meta)


@transaction.atomic
def mfa_recovery_codes_regenerate(*, user, actor, meta: RequestMeta) -> list[str]:
    """Replace the user's recovery codes (old ones stop working); audited."""
    return _issue_recovery_codes(user=user, actor=actor, meta=meta)


def _issue_recovery_codes(*, user, actor, meta: RequestMeta) -> list[str]:
    device, _ = StaticDevice.objects.get_or_create(
        user=user, name=RECOVERY_NAME, defaults={"confirmed": True}
    )
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(settings.BATON_RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=c) for c in codes])
    audit_record(
        actor=as_actor(actor),
        action=audit.MFA_RECOVERY_CODES_ISSUED,
        target=device,
        metadata={"user": user.get_username(), "count": len(codes)},
        **meta.as_audit_kwargs(),
    )
    return codes


@transaction.atomic
def lockout_lift(*, attempts, actor, meta: RequestMeta) -> int:
    """Lift login lockouts: delete the given axes AccessAttempt rows.

    One `auth.lockout_lifted` row per attempt record (username + IP) removed.
    """
    count = 0
    for attempt in attempts:
        audit_record(
            actor=as_actor(actor),
            action=audit.LOCKOUT_LIFTED,
            object_type="axes.accessattempt",
            object_id=attempt.pk,
            metadata={
                "username": attempt.username,
                "ip_address": attempt.ip_address,
                "failures": attempt.failures_since_start,
            },
            **meta.as_audit_kwargs(),
        )
        attempt.delete()
        count += 1
    return count
