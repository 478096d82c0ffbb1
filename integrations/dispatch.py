"""Outbox -> deliveries -> partner HTTP: fan-out, claim, send, record.

Flow:
1. `fanout(event_ids)` (after commit, and from the sweep) creates one
   `Delivery` per event x enabled endpoint that wants the event type. It is
   idempotent (unique (event, endpoint)) and marks the events dispatched.
2. `drain()` repeatedly claims a batch of due deliveries with
   `select_for_update(skip_locked=True)` in a short transaction (state ->
   delivering with a lease), commits, sends them over the pooled client with
   no transaction open, then records attempts and outcomes in a second short
   transaction. A worker killed mid-batch leaves rows `delivering` with a
   lease; once it expires any drain reclaims them and sends the same
   webhook-id and body again (at-least-once).
3. Outcomes drive retries (per-endpoint schedule with jitter, Retry-After on
   429/503), dead letters (one `delivery_dead` item per endpoint and event
   type), 410 (endpoint disabled, `endpoint_down` item) and the circuit
   breaker (one `endpoint_down` item when it opens; probes; auto-resolve).
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from integrations.delivery_http import SendResult, send_webhook
from integrations.models import (
    BreakerState,
    Delivery,
    DeliveryState,
    OutboxEvent,
    WebhookEndpoint,
)
from integrations.signing import sign_headers
from integrations.ssrf import HostResolutionError, UnsafeURLError, check_url
from programs.actors import Actor

logger = logging.getLogger(__name__)

TEST_EVENT_TYPE = "integrations.endpoint.test"
SYSTEM = Actor.system("webhook_dispatcher")

_local = threading.local()


# --- bodies and ids ------------------------------------------------------------


def webhook_id_for(event_id: int) -> str:
    return f"msg_{event_id}"


def event_body(event: OutboxEvent) -> bytes:
    """The exact bytes sent for `event`: deterministic, so retries, replays
    and re-sends after a crash are byte-identical."""
    document = {
        "type": event.event_type,
        "timestamp": event.occurred_at.astimezone(UTC).isoformat(),
        "event_id": event.pk,
        "sequence_key": event.sequence_key or None,
        "sequence": event.sequence,
        "data": event.payload,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), default=str).encode()


# --- fan-out -------------------------------------------------------------------


def fanout(event_ids=None, *, limit: int = 2000) -> int:
    """Create deliveries for undispatched events (all of them when
    `event_ids` is None, oldest first, up to `limit`); return how many
    deliveries were created. Idempotent: unique (event, endpoint)."""
    qs = OutboxEvent.objects.filter(dispatched_at__isnull=True).order_by("id")
    if event_ids is not None:
        qs = qs.filter(pk__in=list(event_ids))
    return _fanout(list(qs[:limit]))


def sweep_outbox(*, batch: int = 2000, max_batches: int = 50) -> tuple[int, int]:
    """Fan out events the after-commit hook left behind.
    Returns (events, deliveries)."""
    events_seen = created = 0
    for _ in range(max_batches):
        events = list(OutboxEvent.objects.filter(dispatched_at__isnull=True).order_by("id")[:batch])
        if not events:
            break
        events_seen += len(events)
        created += _fanout(events)
    return events_seen, created


def _fanout(events) -> int:
    if not events:
        return 0
    org_ids = {e.organization_id for e in events}
    endpoints: dict[int, list[WebhookEndpoint]] = defaultdict(list)
    for endpoint in WebhookEndpoint.objects.filter(organization_id__in=org_ids, enabled=True):
        endpoints[endpoint.organization_id].append(endpoint)
    now = timezone.now()
    rows = []
    for event in events:
        for endpoint in endpoints.get(event.organization_id, ()):
            if event.event_type == TEST_EVENT_TYPE:
                if event.payload.get("endpoint_id") != endpoint.pk:
                    continue
            elif not endpoint.wants(event.event_type):
                continue
            rows.append(
                Delivery(
                    organization_id=event.organization_id,
                    event=event,
                    endpoint=endpoint,
                    event_type=event.event_type,
                    webhook_id=webhook_id_for(event.pk),
                    next_attempt_at=now,
                    created_at=now,
                )
            )
    event_ids = [e.pk for e in events]
    if not rows:
        # No endpoint wants these events (the common case for an organization
        # without webhooks): one UPDATE marks them, no transaction needed.
        OutboxEvent.objects.filter(pk__in=event_ids).update(dispatched_at=now)
        return 0
    with transaction.atomic():
        Delivery.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
        OutboxEvent.objects.filter(pk__in=event_ids).update(dispatched_at=now)
    return len(rows)


def enqueue_drain() -> None:
    """Ask the task queue to drain (skipped inside a running drain, which
    loops until nothing is due anyway)."""
    if getattr(_local, "draining", False):
        return
    from django_q.tasks import async_task

    async_task("integrations.tasks.webhooks_drain", task_name="webhooks_drain")


def after_commit(event_ids) -> None:
    """outbox_write's after-commit hook. Never raises: the caller's change is
    already committed, and the sweep picks up whatever fails here."""
    try:
        if fanout(event_ids):
            enqueue_drain()
    except Exception:
        logger.exception("webhook fan-out failed for events %s; the sweep will retry", event_ids)


# --- claiming ------------------------------------------------------------------


def worker_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _lease_until(now):
    return now + timedelta(seconds=settings.BATON_WEBHOOK_LEASE_SECONDS)


def _claim_probes(now, lease_until) -> list[Delivery]:
    """One probe delivery per open breaker whose probe time has come (or whose
    half-open probe was lost with a crashed worker)."""
    claimed = []
    endpoints = WebhookEndpoint.objects.select_for_update(skip_locked=True).filter(
        enabled=True,
        breaker_state__in=[BreakerState.OPEN, BreakerState.HALF_OPEN],
        breaker_next_probe_at__lte=now,
    )
    for endpoint in endpoints:
        delivery = (
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(endpoint=endpoint, state__in=[DeliveryState.PENDING, DeliveryState.RETRYING])
            .order_by("next_attempt_at", "id")
            .first()
        )
        if delivery is None:
            # Nothing to probe with: close the breaker; the next real
            # delivery tests the endpoint and reopens it if still down.
            _close_breaker(endpoint, now=now)
            continue
        delivery.start(lease_until=lease_until, worker=worker_label())
        delivery.save(update_fields=["state", "lease_expires_at", "leased_by"])
        endpoint.breaker_state = BreakerState.HALF_OPEN
        endpoint.breaker_next_probe_at = now + timedelta(
            seconds=max(endpoint.breaker_probe_seconds, settings.BATON_WEBHOOK_LEASE_SECONDS)
        )
        endpoint.save(update_fields=["breaker_state", "breaker_next_probe_at", "updated_at"])
        claimed.append(delivery)
    return claimed


def claim_batch(limit: int = 100) -> list[Delivery]:
    """Lease up to `limit` due deliveries (plus breaker probes); commits
    before returning, so no lock is held while sending."""
    now = timezone.now()
    lease_until = _lease_until(now)
    with transaction.atomic():
        claimed = _claim_probes(now, lease_until)
        due = (
            Delivery.objects.filter(
                Q(
                    state__in=[DeliveryState.PENDING, DeliveryState.RETRYING],
                    next_attempt_at__lte=now,
                )
                | Q(state=DeliveryState.DELIVERING, lease_expires_at__lt=now),
                endpoint__enabled=True,
                endpoint__breaker_state=BreakerState.CLOSED,
            )
            .order_by("next_attempt_at", "id")
            .select_for_update(skip_locked=True, of=("self",))[:limit]
        )
        rows = list(due)
        worker = worker_label()
        for delivery in rows:
            delivery.start(lease_until=lease_until, worker=worker)  # checked by django-fsm
        if rows:
            # Every claimed row gets the same values: one UPDATE instead of
            # bulk_update's per-row CASE (which dominated the drain profile).
            Delivery.objects.filter(pk__in=[d.pk for d in rows]).update(
                state=DeliveryState.DELIVERING, lease_expires_at=lease_until, leased_by=worker
            )
        claimed.extend(rows)
    if not claimed:
        return []
    # Attach events and endpoints with two queries (not a join per row): a
    # batch usually goes to a handful of endpoints, so they are shared.
    events = OutboxEvent.objects.only(*EVENT_BODY_FIELDS).in_bulk({d.event_id for d in claimed})
    endpoints = WebhookEndpoint.objects.in_bulk({d.endpoint_id for d in claimed})
    for delivery in claimed:
        delivery.event = events[delivery.event_id]
        delivery.endpoint = endpoints[delivery.endpoint_id]
        delivery.lease_expires_at = lease_until
        delivery._claimed_lease = lease_until
    return claimed


EVENT_BODY_FIELDS = ("id", "event_type", "occurred_at", "sequence_key", "sequence", "payload")


# --- sending -------------------------------------------------------------------


def _send_one(delivery: Delivery, target) -> SendResult:
    body = event_body(delivery.event)
    headers = sign_headers(
        secrets=delivery.endpoint.signing_secrets(),
        msg_id=delivery.webhook_id,
        timestamp=timezone.now(),
        body=body,
    )
    return send_webhook(url=delivery.endpoint.url, headers=headers, body=body, target=target)


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_key: tuple | None = None


def _send_pool(concurrency: int) -> ThreadPoolExecutor:
    """The process-wide sending threads (re-created after a fork or when the
    concurrency changes): starting threads per batch cost more than sending."""
    global _pool, _pool_key
    key = (os.getpid(), concurrency)
    with _pool_lock:
        if _pool is None or _pool_key != key:
            if _pool is not None and _pool_key[0] == os.getpid():
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="webhook-send")
            _pool_key = key
        return _pool


def submit_batch(batch: list[Delivery], *, concurrency: int | None = None) -> dict:
    """Start sending each claimed delivery once (no transaction is open);
    returns {delivery id: SendResult or Future}. `collect()` waits for them."""
    targets: dict[str, object] = {}
    results: dict = {}
    sendable = []
    for delivery in batch:
        url = delivery.endpoint.url
        if url not in targets:
            try:
                targets[url] = check_url(url, for_send=True)
            except UnsafeURLError as exc:
                targets[url] = exc
        target = targets[url]
        if isinstance(target, UnsafeURLError):
            now = timezone.now()
            error_class = "dns_error" if isinstance(target, HostResolutionError) else "unsafe_url"
            results[delivery.pk] = SendResult(
                started_at=now, error_class=error_class, error=target.message
            )
        else:
            sendable.append((delivery, target))
    concurrency = concurrency or settings.BATON_WEBHOOK_SEND_CONCURRENCY
    if len(sendable) <= 1 or concurrency <= 1:
        for delivery, target in sendable:
            results[delivery.pk] = _send_one(delivery, target)
    else:
        pool = _send_pool(concurrency)
        for delivery, target in sendable:
            results[delivery.pk] = pool.submit(_send_one, delivery, target)
    return results


def collect(pending: dict) -> dict[int, SendResult]:
    return {pk: r.result() if isinstance(r, Future) else r for pk, r in pending.items()}


def send_batch(batch: list[Delivery], *, concurrency: int | None = None) -> dict[int, SendResult]:
    """Send each claimed delivery once and wait for all (no transaction is open)."""
    return collect(submit_batch(batch, concurrency=concurrency))


# --- recording -----------------------------------------------------------------


def _jittered(seconds: float) -> float:
    if seconds <= 0:
        return 0.0
    return seconds * random.uniform(0.9, 1.2)


def next_retry_delay(endpoint: WebhookEndpoint, attempt_number: int, retry_after=None):
    """Seconds until attempt `attempt_number + 1`, or None when exhausted."""
    schedule = endpoint.schedule()
    if attempt_number >= len(schedule):
        return None
    delay = _jittered(schedule[attempt_number])
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def record_results(batch: list[Delivery], results: dict[int, SendResult]) -> dict:
    """Write attempts and outcomes for a sent batch in one short transaction."""
    from integrations.delivery_outcomes import (
        apply_breaker,
        disable_gone_endpoint,
        raise_dead,
        resolve_recovered_dead,
    )
    from integrations.models import Attempt

    stats = defaultdict(int)
    now = timezone.now()
    endpoints = {d.endpoint_id: d.endpoint for d in batch}
    with transaction.atomic():
        # Read (state, lease, attempt count) without locking or loading whole
        # rows: the writes below are guarded by the state and lease we hold,
        # so a row reclaimed by another worker is never overwritten.
        current = {
            pk: (state, lease, count)
            for pk, state, lease, count in Delivery.objects.filter(
                pk__in=[d.pk for d in batch]
            ).values_list("pk", "state", "lease_expires_at", "attempt_count")
        }
        attempts, changed = [], []
        outcomes: dict[int, list[bool]] = defaultdict(list)
        dead, gone, recovered = [], set(), set()
        for claimed in batch:
            result = results[claimed.pk]
            row = current.get(claimed.pk)
            if row is None:
                continue
            delivery = claimed
            db_state, db_lease, delivery.attempt_count = row
            attempts.append(
                Attempt(
                    delivery_id=delivery.pk,
                    number=delivery.attempt_count + 1,
                    started_at=result.started_at,
                    status_code=result.status_code,
                    latency_ms=result.latency_ms,
                    error_class=result.error_class,
                    response_snippet=result.snippet[:500],
                    succeeded=result.ok,
                )
            )
            still_ours = db_state == DeliveryState.DELIVERING and db_lease == claimed._claimed_lease
            if not still_ours:
                stats["stale"] += 1  # another worker reclaimed it after our lease ran out
                continue
            endpoint = endpoints[delivery.endpoint_id]
            if result.ok:
                delivery.succeed(status_code=result.status_code, at=now)
                stats["delivered"] += 1
                if delivery.replays:
                    recovered.add((delivery.endpoint_id, delivery.event_type))
            elif result.error_class == "gone":
                delivery.disable(reason=result.error)
                gone.add(delivery.endpoint_id)
                stats["disabled"] += 1
            else:
                delay = next_retry_delay(
                    endpoint, delivery.attempt_count + 1, retry_after=result.retry_after
                )
                error = result.error or result.error_class
                if delay is None:
                    delivery.die(status_code=result.status_code, error=error, at=now)
                    dead.append(delivery)
                    stats["dead"] += 1
                else:
                    delivery.fail(
                        status_code=result.status_code,
                        error=error,
                        next_at=now + timedelta(seconds=delay),
                    )
                    stats["retrying"] += 1
            outcomes[delivery.endpoint_id].append(result.ok)
            changed.append(delivery)
        _persist(changed, now)
        Attempt.objects.bulk_create(attempts)
        for endpoint_id, oks in outcomes.items():
            endpoint = endpoints[endpoint_id]
            if endpoint_id in gone:
                continue
            healthy = endpoint.breaker_state == BreakerState.CLOSED
            if all(oks) and healthy and endpoint.consecutive_failures == 0:
                continue  # nothing to change: skip locking the endpoint row
            apply_breaker(endpoint_id=endpoint_id, outcomes=oks, now=now)
        for endpoint_id in gone:
            disable_gone_endpoint(endpoint_id=endpoint_id, now=now)
        raise_dead(dead)
        resolve_recovered_dead(recovered)
    return dict(stats)


OUTCOME_FIELDS = [
    "state",
    "attempt_count",
    "last_status_code",
    "last_error",
    "next_attempt_at",
    "lease_expires_at",
    "leased_by",
    "delivered_at",
    "dead_at",
]


def _persist(changed: list[Delivery], now) -> None:
    """Write outcomes whose transitions already ran in memory (django-fsm
    checked each). Successes, the bulk of the traffic, share their values
    but the status code and attempt count: one UPDATE per status code,
    guarded by the state we hold. The rest (failures: per-row backoff
    times) go through bulk_update."""
    successes: dict[tuple, list[int]] = defaultdict(list)
    others = []
    for delivery in changed:
        if delivery.state == DeliveryState.DELIVERED:
            successes[(delivery.last_status_code, delivery._claimed_lease)].append(delivery.pk)
        else:
            others.append(delivery)
    for (status_code, lease), ids in successes.items():
        Delivery.objects.filter(
            pk__in=ids, state=DeliveryState.DELIVERING, lease_expires_at=lease
        ).update(
            state=DeliveryState.DELIVERED,
            attempt_count=F("attempt_count") + 1,
            last_status_code=status_code,
            last_error="",
            lease_expires_at=None,
            leased_by="",
            delivered_at=now,
        )
    if others:
        # Failures are few and carry per-row backoff times. Lock them and keep
        # only rows still delivering under our lease before writing.
        leases = {d.pk: d._claimed_lease for d in others}
        ours = {
            pk
            for pk, lease in Delivery.objects.select_for_update()
            .filter(pk__in=list(leases), state=DeliveryState.DELIVERING)
            .values_list("pk", "lease_expires_at")
            if lease == leases[pk]
        }
        others = [d for d in others if d.pk in ours]
        Delivery.objects.bulk_update(others, OUTCOME_FIELDS, batch_size=500)


def _close_breaker(endpoint, *, now):
    from integrations.delivery_outcomes import close_breaker

    close_breaker(endpoint, now=now)


# --- the drain loop --------------------------------------------------------------


def drain(*, max_seconds: float = 50.0, batch_size: int = 100, concurrency=None) -> dict:
    """Claim, send and record batches until nothing is due or time is up.

    Pipelined: the next batch is claimed while the current one is on the
    wire, then the current one is recorded, so the database work of one
    batch overlaps the HTTP work of another. Each batch is still claimed,
    sent and recorded in that order, in its own short transactions."""
    totals = defaultdict(int)
    deadline = time.monotonic() + max_seconds
    _local.draining = True
    in_flight = None  # (batch, pending results)
    try:
        while True:
            batch = claim_batch(batch_size) if time.monotonic() < deadline else []
            sending = (batch, submit_batch(batch, concurrency=concurrency)) if batch else None
            previous, in_flight = in_flight, sending
            if previous is not None:
                done, pending = previous
                for key, value in record_results(done, collect(pending)).items():
                    totals[key] += value
                totals["batches"] += 1
            if in_flight is None and previous is None:
                break  # nothing was due even after the last batch was recorded
    finally:
        if in_flight is not None:  # an error left a batch on the wire: record it
            done, pending = in_flight
            try:
                record_results(done, collect(pending))
            except Exception:
                logger.exception("could not record a sent batch; its lease expiry retries it")
        _local.draining = False
    return dict(totals)
