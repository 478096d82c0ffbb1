"""Reads for webhook deliveries: endpoint health for the admin and console."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Q
from django.utils import timezone

from integrations.models import Attempt, Delivery, DeliveryState

HEALTH_WINDOW = timedelta(hours=24)
LATENCY_SAMPLE = 1000
WAITING = [DeliveryState.PENDING, DeliveryState.RETRYING, DeliveryState.DELIVERING]


def _percentile(values: list[int], fraction: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def endpoint_health(endpoint, *, window: timedelta = HEALTH_WINDOW) -> dict:
    """Success rate and p95 latency of attempts in `window` (p95 over the
    latest 1,000), backlog (waiting deliveries), dead count, breaker state."""
    since = timezone.now() - window
    attempts = Attempt.objects.filter(delivery__endpoint=endpoint, started_at__gte=since)
    counts = attempts.aggregate(total=Count("id"), ok=Count("id", filter=Q(succeeded=True)))
    latencies = list(
        attempts.filter(status_code__isnull=False)
        .order_by("-started_at")
        .values_list("latency_ms", flat=True)[:LATENCY_SAMPLE]
    )
    states = dict(
        Delivery.objects.filter(endpoint=endpoint)
        .filter(state__in=[*WAITING, DeliveryState.DEAD, DeliveryState.DISABLED])
        .values_list("state")
        .annotate(n=Count("id"))
    )
    total, ok = counts["total"], counts["ok"]
    rate = (ok / total) if total else None
    p95 = _percentile(latencies, 0.95)
    return {
        "attempts": total,
        "success_rate": rate,
        "success_rate_display": f"{rate:.1%}" if rate is not None else "no attempts",
        "p95_ms": p95,
        "p95_display": f"{p95} ms" if p95 is not None else "n/a",
        "backlog": sum(states.get(s, 0) for s in WAITING),
        "dead": states.get(DeliveryState.DEAD, 0),
        "held": states.get(DeliveryState.DISABLED, 0),
        "breaker_state": endpoint.breaker_state,
    }
