"""Writes for webhook endpoints and deliveries.

Each service checks its input, changes rows in one transaction with its
audit row, and enqueues work after commit (never I/O inside). Secrets are
returned once by create/rotate and never written to the audit trail.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from integrations.dispatch import TEST_EVENT_TYPE, enqueue_drain
from integrations.event_types import catalogue
from integrations.models import Delivery, DeliveryState, WebhookEndpoint
from integrations.outbox import outbox_write
from integrations.signing import generate_secret
from integrations.ssrf import UnsafeURLError, check_url
from programs.actors import as_actor
from programs.errors import BatonError
from programs.services import audit_record

DEFAULT_ROTATION_OVERLAP = timedelta(hours=24)
MAX_EVENT_TYPES = 100


class WebhookEndpointInvalid(BatonError):
    """Input for an endpoint was refused; `errors` lists (field, message)."""

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__("; ".join(f"{field}: {message}" for field, message in self.errors))


def webhook_endpoint_validate(
    *, partner_name=None, url=None, event_types=None, retry_schedule=None, **_
) -> None:
    """Raise WebhookEndpointInvalid for what create/update refuse in these
    fields (they call it; forms call it to show errors before saving)."""
    errors = []
    if partner_name is not None and not str(partner_name).strip():
        errors.append(("partner_name", "a partner name is required"))
    if partner_name is not None and len(str(partner_name)) > 200:
        errors.append(("partner_name", "at most 200 characters"))
    if url is not None:
        try:
            check_url(url)
        except UnsafeURLError as exc:
            errors.append(("url", exc.message))
    if event_types is not None:
        if not isinstance(event_types, list) or len(event_types) > MAX_EVENT_TYPES:
            errors.append(("event_types", f"a list of at most {MAX_EVENT_TYPES} names"))
        else:
            known = {e.name for e in catalogue()}
            for index, name in enumerate(event_types):
                if not isinstance(name, str):
                    errors.append((f"event_types[{index}]", "must be a string"))
                elif (
                    name == "*"
                    or name in known
                    or (name.endswith(".*") and any(k.startswith(name[:-1]) for k in known))
                ):
                    continue
                else:
                    errors.append((f"event_types[{index}]", f"unknown event type {name!r}"))
    if retry_schedule is not None:
        ok = (
            isinstance(retry_schedule, list)
            and 1 <= len(retry_schedule) <= 20
            and all(
                isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= 7 * 86400
                for s in retry_schedule
            )
        )
        if not ok:
            errors.append(("retry_schedule", "a list of 1-20 whole seconds between 0 and 604800"))
    if errors:
        raise WebhookEndpointInvalid(errors)


def webhook_endpoint_create(
    *,
    organization,
    partner_name: str,
    url: str,
    actor,
    event_types: list | None = None,
    enabled: bool = True,
    retry_schedule: list | None = None,
    breaker_threshold: int | None = None,
    breaker_probe_seconds: int | None = None,
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint (SSRF-checked URL, known event types) and return
    it with its new `whsec_` secret, which is shown only this once.
    Audited as `webhook_endpoint.created`."""
    actor = as_actor(actor)
    event_types = list(event_types or [])
    webhook_endpoint_validate(
        partner_name=partner_name, url=url, event_types=event_types, retry_schedule=retry_schedule
    )
    secret = generate_secret()
    with transaction.atomic():
        endpoint = WebhookEndpoint(
            organization_id=getattr(organization, "pk", organization),
            partner_name=partner_name.strip(),
            url=url,
            event_types=event_types,
            enabled=enabled,
            secret=secret,
            retry_schedule=retry_schedule or None,
        )
        if breaker_threshold:
            endpoint.breaker_threshold = breaker_threshold
        if breaker_probe_seconds:
            endpoint.breaker_probe_seconds = breaker_probe_seconds
        endpoint.save()
        audit_record(
            actor=actor,
            action="webhook_endpoint.created",
            target=endpoint,
            to_state="enabled" if enabled else "disabled",
            metadata={"url": url, "event_types": event_types, "partner": endpoint.partner_name},
        )
    return endpoint, secret


UPDATABLE = ("partner_name", "url", "event_types", "retry_schedule", "enabled")


def webhook_endpoint_update(*, endpoint_id: int, actor, **changes) -> WebhookEndpoint:
    """Change name, URL (re-checked), event filter, schedule or enabled flag.
    Enabling re-queues deliveries held while disabled. Audited."""
    actor = as_actor(actor)
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise WebhookEndpointInvalid([(name, "this field cannot be changed") for name in unknown])
    webhook_endpoint_validate(**changes)
    requeue = False
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
        before = {k: getattr(endpoint, k) for k in changes}
        for key, value in changes.items():
            setattr(endpoint, key, value.strip() if key == "partner_name" else value)
        if changes.get("enabled") is True and not before.get("enabled", True):
            endpoint.disabled_reason = ""
            endpoint.consecutive_failures = 0
            endpoint.breaker_state = "closed"
            requeue = True
        elif changes.get("enabled") is False:
            endpoint.disabled_reason = f"disabled by {actor.label}"
        endpoint.save()
        if requeue:
            _requeue_disabled(endpoint)
        audit_record(
            actor=actor,
            action="webhook_endpoint.updated",
            target=endpoint,
            metadata={
                "changed": {
                    k: {"from": before[k], "to": getattr(endpoint, k)}
                    for k in changes
                    if before[k] != getattr(endpoint, k)
                }
            },
        )
        if requeue:
            from integrations.delivery_outcomes import endpoint_down_key
            from programs.services import exception_resolve_for

            exception_resolve_for(
                organization=endpoint.organization_id,
                dedup_key=endpoint_down_key(endpoint.pk),
                actor=actor,
                note="endpoint re-enabled",
            )
            transaction.on_commit(enqueue_drain)
    return endpoint


def _requeue_disabled(endpoint) -> int:
    held = list(
        Delivery.objects.select_for_update().filter(endpoint=endpoint, state=DeliveryState.DISABLED)
    )
    now = timezone.now()
    for delivery in held:
        delivery.replay(at=now)
    Delivery.objects.bulk_update(
        held, ["state", "attempt_count", "next_attempt_at", "dead_at", "replays"], 1000
    )
    return len(held)


def webhook_endpoint_delete(*, endpoint_id: int, actor) -> None:
    """Remove an endpoint with its deliveries and attempts. Audited."""
    actor = as_actor(actor)
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
        audit_record(
            actor=actor,
            action="webhook_endpoint.deleted",
            target=endpoint,
            metadata={"url": endpoint.url, "partner": endpoint.partner_name},
        )
        # Its queue items would offer to probe or replay what no longer exists.
        _resolve_items_of(endpoint, actor)
        endpoint.delete()


def _resolve_items_of(endpoint, actor) -> None:
    from integrations.delivery_outcomes import delivery_dead_key, endpoint_down_key
    from programs.models import ACTIVE_EXCEPTION_STATES, OpsException
    from programs.services import exception_resolve_for

    keys = [endpoint_down_key(endpoint.pk)]
    prefix = delivery_dead_key(endpoint.pk, "")
    keys += OpsException.objects.filter(
        organization_id=endpoint.organization_id,
        dedup_key__startswith=prefix,
        state__in=ACTIVE_EXCEPTION_STATES,
    ).values_list("dedup_key", flat=True)
    for key in keys:
        exception_resolve_for(
            organization=endpoint.organization_id,
            dedup_key=key,
            actor=actor,
            note="the webhook endpoint was deleted",
        )


def webhook_endpoint_rotate_secret(
    *, endpoint_id: int, actor, overlap: timedelta = DEFAULT_ROTATION_OVERLAP
) -> str:
    """Issue a new secret; the old one keeps signing (alongside) until
    `overlap` has passed. Returns the new secret (shown once). Audited."""
    actor = as_actor(actor)
    if overlap < timedelta(0) or overlap > timedelta(days=30):
        raise WebhookEndpointInvalid([("overlap", "between 0 and 30 days")])
    secret = generate_secret()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = timezone.now() + overlap
        endpoint.secret = secret
        endpoint.save()
        audit_record(
            actor=actor,
            action="webhook_endpoint.secret_rotated",
            target=endpoint,
            metadata={"overlap_seconds": int(overlap.total_seconds())},
        )
    return secret


def webhook_endpoint_send_test(*, endpoint_id: int, actor) -> int:
    """Write an `integrations.endpoint.test` event addressed to this endpoint
    only; it is delivered like any other event. Returns the outbox event id."""
    actor = as_actor(actor)
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)
        event = outbox_write(
            organization=endpoint.organization_id,
            event_type_name=TEST_EVENT_TYPE,
            payload={"endpoint_id": endpoint.pk, "test": True},
        )
        audit_record(
            actor=actor,
            action="webhook_endpoint.test_sent",
            target=endpoint,
            metadata={"event_id": event.pk},
        )
    return event.pk


def delivery_replay(*, delivery_ids, actor, reason: str = "") -> int:
    """Re-send dead (or disabled, or delivered) deliveries with the same
    webhook-id and body; the retry schedule restarts. Returns how many.
    Audited per delivery as `delivery.replayed`."""
    actor = as_actor(actor)
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            Delivery.objects.select_for_update()
            .filter(
                pk__in=list(delivery_ids),
                state__in=[DeliveryState.DEAD, DeliveryState.DISABLED, DeliveryState.DELIVERED],
                endpoint__enabled=True,
            )
            .select_related("endpoint")
        )
        for delivery in rows:
            from_state = delivery.state
            delivery.replay(at=now)
            audit_record(
                actor=actor,
                action="delivery.replayed",
                target=delivery,
                organization=delivery.organization_id,
                from_state=from_state,
                to_state=delivery.state,
                reason=reason,
                metadata={"webhook_id": delivery.webhook_id},
            )
        Delivery.objects.bulk_update(
            rows, ["state", "attempt_count", "next_attempt_at", "dead_at", "replays"], 1000
        )
        if rows:
            transaction.on_commit(enqueue_drain)
    return len(rows)


def replay_dead_for_exception(exception, actor) -> str:
    """Retry action of `delivery_dead` items: replay every dead delivery of
    the item's endpoint and event type."""
    endpoint_id = exception.context.get("endpoint_id")
    event_type = exception.context.get("event_type")
    ids = list(
        Delivery.objects.filter(
            endpoint_id=endpoint_id, event_type=event_type, state=DeliveryState.DEAD
        ).values_list("pk", flat=True)
    )
    count = delivery_replay(delivery_ids=ids, actor=actor, reason=f"exception #{exception.pk}")
    noun = "delivery" if count == 1 else "deliveries"
    return f"replayed {count} dead {noun} with their original webhook-id"


def probe_endpoint_for_exception(exception, actor) -> str:
    """Retry action of `endpoint_down` items: re-enable a disabled endpoint
    (re-queuing held deliveries) or probe an open breaker now."""
    endpoint_id = exception.context.get("endpoint_id")
    endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id).first()
    if endpoint is None:
        return "the endpoint no longer exists"
    if not endpoint.enabled:
        webhook_endpoint_update(endpoint_id=endpoint.pk, actor=actor, enabled=True)
        return "endpoint re-enabled; held deliveries re-queued"
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
        if endpoint.breaker_state != "closed":
            endpoint.breaker_next_probe_at = timezone.now()
            endpoint.save(update_fields=["breaker_next_probe_at", "updated_at"])
        audit_record(
            actor=as_actor(actor), action="webhook_endpoint.probe_requested", target=endpoint
        )
        transaction.on_commit(enqueue_drain)
    return "a probe delivery was queued"
