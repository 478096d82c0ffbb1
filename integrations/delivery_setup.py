"""Plug webhook delivery into programs' registries (called from AppConfig.ready)."""

from __future__ import annotations

from django.db import transaction
from django.urls import NoReverseMatch, reverse

from integrations.rows import one_of
from programs.registries import (
    register_exception_kind,
    register_retry_action,
    register_schedule,
    register_subject_context,
    register_timeline_contributor,
)


def delivery_timeline_rows(enrollment):
    """Timeline rows: each webhook delivery of this enrollment's events."""
    from integrations.models import Delivery
    from programs.timeline import TimelineRow

    deliveries = (
        Delivery.objects.filter(event__sequence_key=f"enrollment:{enrollment.pk}")
        .select_related("endpoint")
        .order_by("-created_at")[:200]
    )
    for delivery in deliveries:
        at = delivery.delivered_at or delivery.dead_at or delivery.created_at
        detail = f"{delivery.state}, {delivery.attempt_count} attempt(s)"
        if delivery.last_status_code:
            detail += f", last HTTP {delivery.last_status_code}"
        if delivery.last_error and delivery.state != "delivered":
            detail += f" ({delivery.last_error})"
        try:
            url = reverse("admin:integrations_delivery_change", args=[delivery.pk])
        except NoReverseMatch:
            url = ""
        yield TimelineRow(
            at=at,
            kind="webhook",
            title=f"Webhook {delivery.event_type} to {delivery.endpoint.partner_name}",
            detail=detail,
            actor="system:webhook_dispatcher",
            url=url,
        )


def webhook_interest(organization_ids, event_types) -> set[tuple[int, str]]:
    """The (organization id, event type) pairs the webhook fan-out would
    deliver: some enabled endpoint of the organization subscribes to the type
    (same rule as `dispatch._fanout`; the endpoint test event goes to any
    enabled endpoint). One query. Lets bulk writers skip the after-commit
    fan-out for events nobody receives (`integrations.outbox.outbox_wanted`)."""
    from integrations.dispatch import TEST_EVENT_TYPE
    from integrations.models import WebhookEndpoint

    wanted = set()
    for organization_id, patterns in _enabled_endpoint_patterns(list(organization_ids)):
        probe = WebhookEndpoint(event_types=patterns)
        for name in event_types:
            if name == TEST_EVENT_TYPE or probe.wants(name):
                wanted.add((organization_id, name))
    return wanted


def _enabled_endpoint_patterns(organization_ids: list) -> list[tuple[int, list]]:
    """(organization id, event type patterns) of the enabled endpoints of
    these organizations. Hand-written SQL: every write of outbox events asks
    (each partner event that completes a step), and compiling the ORM query
    cost more than running it."""
    from integrations.models import WebhookEndpoint

    if not organization_ids:
        return []
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    condition, params = one_of(connection, quote("organization_id"), organization_ids)
    patterns = WebhookEndpoint._meta.get_field("event_types")
    sql = (
        f"SELECT {quote('organization_id')}, {quote('event_types')} "  # noqa: S608
        f"FROM {quote(WebhookEndpoint._meta.db_table)} "
        f"WHERE {condition} AND {quote('enabled')} = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, True])
        rows = cursor.fetchall()
    return [(org, patterns.from_db_value(value, None, connection)) for org, value in rows]


def endpoint_subject_context(exception):
    from integrations.delivery_selectors import endpoint_health
    from integrations.models import Delivery, WebhookEndpoint
    from programs.registries import SubjectContext

    endpoint = WebhookEndpoint.objects.filter(pk=exception.subject_id).first()
    if endpoint is None:
        return None
    health = endpoint_health(endpoint)
    rows = []
    recent = Delivery.objects.filter(endpoint=endpoint).exclude(state="delivered")[:20]
    from programs.timeline import TimelineRow

    for delivery in recent:
        rows.append(
            TimelineRow(
                at=delivery.dead_at or delivery.next_attempt_at,
                kind="webhook",
                title=f"{delivery.event_type} ({delivery.state})",
                detail=delivery.last_error,
            )
        )
    return SubjectContext(
        title=f"Webhook endpoint: {endpoint.partner_name}",
        fields=[
            ("URL", endpoint.url),
            ("Enabled", "yes" if endpoint.enabled else f"no ({endpoint.disabled_reason})"),
            ("Breaker", endpoint.get_breaker_state_display()),
            ("Success rate (24 h)", health["success_rate_display"]),
            ("p95 latency (24 h)", health["p95_display"]),
            ("Backlog", str(health["backlog"])),
            ("Dead", str(health["dead"])),
        ],
        rows=rows,
        links=[
            (
                "Endpoint in admin",
                reverse("admin:integrations_webhookendpoint_change", args=[endpoint.pk]),
            )
        ],
    )


def setup() -> None:
    from integrations.dispatch import after_commit
    from integrations.outbox import register_after_commit_hook
    from integrations.services.webhooks import (
        probe_endpoint_for_exception,
        replay_dead_for_exception,
    )

    register_exception_kind(
        "delivery_dead",
        "Webhook undeliverable",
        default_severity="high",
        description=(
            "A partner webhook exhausted its retries (one item per endpoint and event type)."
        ),
    )
    register_exception_kind(
        "endpoint_down",
        "Webhook endpoint down",
        default_severity="high",
        description="A partner endpoint's circuit breaker opened, or it answered 410 Gone.",
    )
    register_retry_action(
        "delivery_dead",
        "Replay dead deliveries",
        replay_dead_for_exception,
        description="Sends this endpoint's dead deliveries of this event type again, with "
        "their original webhook-id; the item resolves itself once the endpoint accepts them.",
    )
    register_retry_action(
        "endpoint_down",
        "Probe or re-enable endpoint",
        probe_endpoint_for_exception,
        description="Re-enables a disabled endpoint (its held deliveries go out again) or "
        "probes an open circuit breaker now; the item resolves itself once the endpoint "
        "answers.",
    )
    register_schedule(
        "integrations.webhooks_dispatch",
        "integrations.tasks.webhooks_dispatch_tick",
        minutes=1,
        description="Fan out outbox events left behind; send due webhook retries and probes.",
    )
    register_schedule(
        "integrations.inbound_receipts_purge",
        "integrations.tasks.inbound_receipts_purge_job",
        minutes=60,
        description="Delete inbound webhook receipts past the retention window.",
    )
    register_timeline_contributor(delivery_timeline_rows)
    register_subject_context("integrations.webhookendpoint", endpoint_subject_context)
    register_after_commit_hook(after_commit, interest=webhook_interest)
