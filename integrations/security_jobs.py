"""Scheduled warning about partner API keys that are about to expire.

Registered from IntegrationsConfig.ready() via `register()`: the exception
kind `api_key_expiring` and the daily schedule `integrations.warn_expiring_api_keys`.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from programs.actors import Actor
from programs.jobs import periodic_job
from programs.models import ACTIVE_EXCEPTION_STATES, OpsException
from programs.registries import register_exception_kind, register_schedule
from programs.services import exception_raise, exception_resolve_for

KIND = "api_key_expiring"
WARN_BEFORE = timedelta(days=14)
JOB = "integrations.warn_expiring_api_keys"


def register():
    register_exception_kind(
        KIND,
        "API key expiring",
        default_severity="medium",
        description="A partner API key expires within 14 days; issue a new key and "
        "hand it to the partner before then, or the integration stops.",
    )
    register_schedule(
        JOB,
        "integrations.security_jobs.warn_expiring_api_keys",
        cron="0 6 * * *",
        description="Open an exception-queue item for API keys expiring within 14 days.",
    )


def dedup_key(client_id: int) -> str:
    return f"{KIND}:{client_id}"


@periodic_job(JOB)
def warn_expiring_api_keys() -> dict:
    """Open one `api_key_expiring` item per usable key that expires within
    14 days (deduplicated per key, so daily runs do not pile up), and
    auto-resolve open items whose key was revoked or given a later expiry.
    Idempotent: running twice opens nothing new."""
    from integrations.models import ApiClient

    now = timezone.now()
    horizon = now + WARN_BEFORE
    actor = Actor.system(JOB)
    expiring = ApiClient.objects.filter(
        revoked_at__isnull=True, expires_at__gt=now, expires_at__lte=horizon
    ).select_related("organization")
    opened = 0
    expiring_ids = set()
    for client in expiring:
        expiring_ids.add(client.pk)
        days = max(0, (client.expires_at - now).days)
        _item, created = exception_raise(
            organization=client.organization,
            kind=KIND,
            title=f"API key '{client.name}' ({client.prefix}) expires in {days} day(s)",
            detail=(
                f"The key expires at {client.expires_at:%Y-%m-%d %H:%M} UTC. Create a new key "
                "for the partner, let them switch, then revoke this one."
            ),
            dedup_key=dedup_key(client.pk),
            subject=client,
            actor=actor,
            context={"expires_at": client.expires_at.isoformat(), "prefix": client.prefix},
        )
        opened += int(created)
    resolved = 0
    stale = OpsException.objects.filter(kind=KIND, state__in=ACTIVE_EXCEPTION_STATES).exclude(
        subject_id__in=[str(pk) for pk in expiring_ids]
    )
    for item in stale:
        client = ApiClient.objects.filter(pk=item.subject_id).first()
        if client is not None and client.is_expired(now) and not client.is_revoked:
            continue  # expired unreplaced: keep it open for a human
        if exception_resolve_for(
            organization=item.organization_id,
            dedup_key=item.dedup_key,
            actor=actor,
            note="key revoked or its expiry moved beyond 14 days",
        ):
            resolved += 1
    return {"expiring": len(expiring_ids), "opened": opened, "resolved": resolved}
