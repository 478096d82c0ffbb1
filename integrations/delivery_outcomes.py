"""What delivery outcomes do to endpoints and the exception queue.

All of these run inside the dispatcher's recording transaction.
- circuit breaker: `threshold` consecutive failures open it and raise ONE
  `endpoint_down` item (dedup key `endpoint_down:<id>`); while open, one
  probe delivery runs every `breaker_probe_seconds`; a success closes it,
  pulls the waiting backlog forward and auto-resolves the item;
- 410 Gone: the endpoint is disabled, its waiting deliveries become
  `disabled`, and an `endpoint_down` item is opened;
- dead deliveries: one `delivery_dead` item per endpoint and event type
  (`delivery_dead:<endpoint>:<type>`; repeats bump its occurrence count);
  it auto-resolves once replays leave none of that pair dead.
"""

from __future__ import annotations

from datetime import timedelta

from integrations.models import BreakerState, Delivery, DeliveryState, WebhookEndpoint
from programs.actors import Actor
from programs.services import audit_record, exception_raise, exception_resolve_for

SYSTEM = Actor.system("webhook_dispatcher")


def endpoint_down_key(endpoint_id) -> str:
    return f"endpoint_down:{endpoint_id}"


def delivery_dead_key(endpoint_id, event_type) -> str:
    return f"delivery_dead:{endpoint_id}:{event_type}"


def close_breaker(endpoint: WebhookEndpoint, *, now, note="endpoint recovered") -> None:
    was = endpoint.breaker_state
    endpoint.breaker_state = BreakerState.CLOSED
    endpoint.consecutive_failures = 0
    endpoint.breaker_opened_at = None
    endpoint.breaker_next_probe_at = None
    endpoint.save(
        update_fields=[
            "breaker_state",
            "consecutive_failures",
            "breaker_opened_at",
            "breaker_next_probe_at",
            "updated_at",
        ]
    )
    if was != BreakerState.CLOSED:
        audit_record(
            actor=SYSTEM,
            action="webhook_endpoint.breaker_closed",
            target=endpoint,
            from_state=was,
            to_state=BreakerState.CLOSED,
            reason=note,
        )
        # Drain the backlog now rather than at each delivery's backoff time
        # (a time change only; the state stays `retrying`).
        Delivery.objects.filter(endpoint=endpoint, state=DeliveryState.RETRYING).update(
            next_attempt_at=now
        )
        exception_resolve_for(
            organization=endpoint.organization_id,
            dedup_key=endpoint_down_key(endpoint.pk),
            actor=SYSTEM,
            note=note,
        )


def apply_breaker(*, endpoint_id: int, outcomes: list[bool], now) -> None:
    """Fold this batch's outcomes (in order) into the endpoint's breaker."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
    for ok in outcomes:
        if ok:
            if endpoint.breaker_state != BreakerState.CLOSED:
                close_breaker(endpoint, now=now)
            else:
                endpoint.consecutive_failures = 0
            continue
        endpoint.consecutive_failures += 1
        probe_at = now + timedelta(seconds=endpoint.breaker_probe_seconds)
        if endpoint.breaker_state == BreakerState.HALF_OPEN:
            endpoint.breaker_state = BreakerState.OPEN
            endpoint.breaker_next_probe_at = probe_at
        elif (
            endpoint.breaker_state == BreakerState.CLOSED
            and endpoint.consecutive_failures >= endpoint.breaker_threshold
        ):
            endpoint.breaker_state = BreakerState.OPEN
            endpoint.breaker_opened_at = now
            endpoint.breaker_next_probe_at = probe_at
            audit_record(
                actor=SYSTEM,
                action="webhook_endpoint.breaker_opened",
                target=endpoint,
                from_state=BreakerState.CLOSED,
                to_state=BreakerState.OPEN,
                reason=f"{endpoint.consecutive_failures} consecutive failures",
            )
            exception_raise(
                organization=endpoint.organization_id,
                kind="endpoint_down",
                title=f"Webhook endpoint down: {endpoint.partner_name}",
                detail=(
                    f"{endpoint.consecutive_failures} consecutive delivery failures to "
                    f"{endpoint.url}. Deliveries are paused and one probe is sent every "
                    f"{endpoint.breaker_probe_seconds} s; this closes by itself on recovery."
                ),
                dedup_key=endpoint_down_key(endpoint.pk),
                subject=endpoint,
                actor=SYSTEM,
                context={"endpoint_id": endpoint.pk, "reason": "breaker_open"},
            )
    endpoint.save(
        update_fields=[
            "breaker_state",
            "consecutive_failures",
            "breaker_opened_at",
            "breaker_next_probe_at",
            "updated_at",
        ]
    )


def disable_waiting_deliveries(endpoint_id: int, *, reason: str) -> int:
    waiting = list(
        Delivery.objects.select_for_update().filter(
            endpoint_id=endpoint_id, state__in=[DeliveryState.PENDING, DeliveryState.RETRYING]
        )
    )
    for delivery in waiting:
        delivery.disable(reason=reason)
    Delivery.objects.bulk_update(
        waiting, ["state", "last_error", "lease_expires_at", "leased_by"], 1000
    )
    return len(waiting)


def disable_gone_endpoint(*, endpoint_id: int, now) -> None:
    """The partner answered 410 Gone: stop sending and tell a coordinator."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
    if not endpoint.enabled:
        return
    reason = f"partner answered 410 Gone at {now.isoformat(timespec='seconds')}"
    endpoint.enabled = False
    endpoint.disabled_reason = reason
    endpoint.save(update_fields=["enabled", "disabled_reason", "updated_at"])
    held = disable_waiting_deliveries(endpoint_id, reason=reason)
    audit_record(
        actor=SYSTEM,
        action="webhook_endpoint.disabled",
        target=endpoint,
        from_state="enabled",
        to_state="disabled",
        reason=reason,
        metadata={"held_deliveries": held},
    )
    exception_raise(
        organization=endpoint.organization_id,
        kind="endpoint_down",
        title=f"Webhook endpoint disabled (410 Gone): {endpoint.partner_name}",
        detail=(
            f"{endpoint.url} answered 410 Gone, so the endpoint was disabled and "
            f"{held} waiting deliveries were held. Fix the URL and re-enable it; "
            "held deliveries are then sent."
        ),
        dedup_key=endpoint_down_key(endpoint.pk),
        subject=endpoint,
        actor=SYSTEM,
        severity="high",
        context={"endpoint_id": endpoint.pk, "reason": "gone"},
    )


def raise_dead(dead: list[Delivery]) -> None:
    seen = set()
    for delivery in dead:
        key = (delivery.endpoint_id, delivery.event_type)
        endpoint = delivery.endpoint
        if key in seen:
            continue
        seen.add(key)
        exception_raise(
            organization=delivery.organization_id,
            kind="delivery_dead",
            title=f"Webhook {delivery.event_type} undeliverable to {endpoint.partner_name}",
            detail=(
                f"Delivery gave up after {delivery.attempt_count} attempts "
                f"(last error: {delivery.last_error}). Replay re-sends with the same "
                "webhook-id once the partner is fixed."
            ),
            dedup_key=delivery_dead_key(*key),
            subject=endpoint,
            actor=SYSTEM,
            context={"endpoint_id": endpoint.pk, "event_type": delivery.event_type},
        )


def resolve_recovered_dead(pairs) -> None:
    for endpoint_id, event_type in pairs:
        still_dead = Delivery.objects.filter(
            endpoint_id=endpoint_id, event_type=event_type, state=DeliveryState.DEAD
        ).exists()
        if still_dead:
            continue
        organization_id = (
            WebhookEndpoint.objects.filter(pk=endpoint_id)
            .values_list("organization_id", flat=True)
            .first()
        )
        if organization_id is None:
            continue
        exception_resolve_for(
            organization=organization_id,
            dedup_key=delivery_dead_key(endpoint_id, event_type),
            actor=SYSTEM,
            note="replayed deliveries were accepted",
        )
