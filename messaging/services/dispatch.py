"""Dispatching due messages through the channel connectors.

Three steps, so no I/O ever runs inside a transaction:
1. claim (one transaction): lock due rows with `select_for_update(skip_locked=True)`,
   re-check opt-outs and expiry (suppress), move scheduled -> queued, count
   the attempt and set a lease (`next_attempt_at`) so a crashed worker's
   message is picked up again after it;
2. send (no transaction): each connector sends its batch;
3. record (one transaction per connector group): sent / delivered /
   undeliverable / failed, or back off a retryable failure. Transitions run
   in memory (checked by django-fsm); the changed rows are written with one
   statement, then every change gets its audit row and outbox event in one
   insert each, and its signal. If a receiver fails, the group is recorded
   again one message per savepoint. Every attempt gets a DeliveryAttempt row.
Sending is at least once: a retry carries the same message id (the
connector's idempotency key), so the customer's tool can drop duplicates.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations.connectors import (
    DELIVERED,
    FAILED,
    SENT,
    UNDELIVERABLE,
    Connector,
    ConnectorConfig,
    OutboundMessage,
    SendResult,
    build_connector,
)
from messaging.models import (
    ChannelConnector,
    DeliveryAttempt,
    Message,
    MessageState,
    MessageTemplate,
    OptOut,
    SuppressionReason,
)
from messaging.rendering import render
from messaging.services.messages import suppress_message
from messaging.services.transitions import (
    bulk_save,
    insert_rows,
    record_changes,
    transition_in_memory,
)
from programs.actors import Actor
from programs.services import audit_record

logger = logging.getLogger(__name__)

DEFAULT_RETRY_DELAYS = (30, 120, 600, 1800, 7200)  # seconds after attempts 1..5


def retry_delays() -> tuple[int, ...]:
    return tuple(getattr(settings, "BATON_MESSAGING_RETRY_DELAYS", DEFAULT_RETRY_DELAYS))


def max_attempts() -> int:
    return len(retry_delays()) + 1


def lease() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "BATON_MESSAGING_LEASE_SECONDS", 120)))


def fallback_connector_kind() -> str | None:
    """Used when an organization has no enabled connector for a channel:
    console outside production; in production a missing connector is a failure."""
    default = None if getattr(settings, "PRODUCTION", False) else "console"
    return getattr(settings, "BATON_MESSAGING_FALLBACK_CONNECTOR", default)


@dataclass
class _Claimed:
    message_id: int
    message: Message  # as claimed (queued, this attempt); reused when recording
    attempt: int
    connector_id: int | None
    connector_key: tuple
    outbound: OutboundMessage


class _ConnectorCache:
    """Per dispatch run: which connector serves (organization, channel)."""

    def __init__(self):
        self._by_org: dict[int, list[ChannelConnector]] = {}
        self._instances: dict[tuple, Connector] = {}

    def resolve(self, organization_id: int, channel: str):
        if organization_id not in self._by_org:
            self._by_org[organization_id] = list(
                ChannelConnector.objects.filter(
                    organization_id=organization_id, enabled=True
                ).order_by("-is_default", "pk")
            )
        for row in self._by_org[organization_id]:
            if row.serves(channel):
                key = ("row", row.pk)
                if key not in self._instances:
                    self._instances[key] = build_connector(row.as_config())
                return row.pk, key
        kind = fallback_connector_kind()
        if not kind:
            return None, None
        key = ("fallback", kind)
        if key not in self._instances:
            self._instances[key] = build_connector(
                ConnectorConfig(id=None, organization_id=None, kind=kind, name=f"{kind} (fallback)")
            )
        return None, key

    def get(self, key) -> Connector:
        return self._instances[key]

    def close(self):
        for instance in self._instances.values():
            instance.close()


def _claim(batch_size: int, cache: _ConnectorCache, templates: dict, actor, stats):
    """Return (claimed items, rows locked); suppressed rows count as locked."""
    claimed: list[_Claimed] = []
    with transaction.atomic():
        now = timezone.now()
        # Two index range scans (msg_retry_idx, then msg_due_idx) rather than
        # one OR: the OR walks the scheduled_for index past every message
        # already sent. Retries and expired leases first: they waited longest.
        due = Message.objects.select_for_update(skip_locked=True)
        messages = list(
            due.filter(state=MessageState.QUEUED, next_attempt_at__lte=now).order_by(
                "next_attempt_at", "pk"
            )[:batch_size]
        )
        if len(messages) < batch_size:
            messages += list(
                due.filter(state=MessageState.SCHEDULED, scheduled_for__lte=now).order_by(
                    "scheduled_for", "pk"
                )[: batch_size - len(messages)]
            )
        if not messages:
            return [], 0
        opted_out = set(
            OptOut.objects.filter(
                organization_id__in={m.organization_id for m in messages},
                participant_ref__in={m.participant_ref for m in messages},
            ).values_list("organization_id", "participant_ref", "channel")
        )
        missing = {m.template_id for m in messages} - set(templates)
        if missing:
            templates.update(MessageTemplate.objects.in_bulk(missing))
        lease_until = now + lease()
        changes: list[tuple] = []
        claimed_rows: list[Message] = []
        for message in messages:
            if (message.organization_id, message.participant_ref, message.channel) in opted_out:
                suppress_message(message, SuppressionReason.OPTED_OUT, actor)
                stats["suppressed"] += 1
                continue
            if message.expires_at is not None and now > message.expires_at:
                suppress_message(message, SuppressionReason.EXPIRED, actor)
                stats["suppressed"] += 1
                continue
            message.attempts += 1
            if message.state == MessageState.SCHEDULED:
                transition_in_memory(message, "queue", changes, now=now)
            message.next_attempt_at = lease_until
            claimed_rows.append(message)
            connector_id, key = cache.resolve(message.organization_id, message.channel)
            template = templates[message.template_id]
            claimed.append(
                _Claimed(
                    message_id=message.pk,
                    message=message,
                    attempt=message.attempts,
                    connector_id=connector_id,
                    connector_key=key,
                    outbound=OutboundMessage(
                        message_id=message.pk,
                        organization_id=message.organization_id,
                        program_id=message.program_id,
                        channel=message.channel,
                        template_key=message.template_key,
                        template_version=message.template_version,
                        locale=template.locale,
                        participant_ref=message.participant_ref,
                        variables=message.variables,
                        body=render(template.body, message.variables),
                        scheduled_for=message.scheduled_for,
                    ),
                )
            )
        # One statement for the batch's rows, then one audit insert and one
        # outbox insert for its scheduled -> queued changes (each still gets
        # its own audit row, event and signal).
        bulk_save(claimed_rows, ["state", "attempts", "next_attempt_at"])
        record_changes(changes, actor=actor)
    return claimed, len(messages)


RECORD_FIELDS = [
    "state",
    "connector",
    "vendor_message_id",
    "sent_at",
    "delivered_at",
    "failed_at",
    "next_attempt_at",
    "last_error",
]


def _record_one(message: Message, item: _Claimed, result: SendResult, changes, stats) -> str:
    """Apply one send's outcome in memory. Returns "save" when the message
    changed, "stale" when it changed while we sent (nothing to write)."""
    now = timezone.now()
    if message.state != MessageState.QUEUED or message.attempts != item.attempt:
        # Changed while we sent: canceled, reported by a fast callback, or re-claimed.
        stats["stale"] += 1
        return "stale"
    message.connector_id = item.connector_id
    if result.outcome in (SENT, DELIVERED):
        transition_in_memory(
            message, "mark_sent", changes, now=now, vendor_message_id=result.vendor_message_id
        )
        stats["sent"] += 1
        if result.outcome == DELIVERED:
            transition_in_memory(message, "mark_delivered", changes, now=now)
            stats["delivered"] += 1
    elif result.outcome == UNDELIVERABLE:
        transition_in_memory(
            message,
            "mark_undeliverable",
            changes,
            now=now,
            error=result.error,
            reason=result.error,
        )
        stats["undeliverable"] += 1
    elif result.outcome == FAILED and result.retryable and item.attempt < max_attempts():
        delay = retry_delays()[item.attempt - 1]
        message.next_attempt_at = now + timedelta(seconds=delay * random.uniform(0.9, 1.1))
        message.last_error = result.error[:2000]
        stats["retrying"] += 1
    else:
        error = result.error
        if result.retryable:
            error = f"{error} (gave up after {item.attempt} attempts)"
        transition_in_memory(message, "mark_failed", changes, now=now, error=error, reason=error)
        stats["failed"] += 1
    return "save"


def _record(items: list[_Claimed], results: list[SendResult], cache, actor, stats) -> None:
    """Record a sent group in one transaction: attempt rows, one bulk write of
    the changed messages, then their audit rows, outbox events and signals in
    bulk. If that fails (a receiver raised), the group is recorded again
    message by message, each in a savepoint, so one bad message cannot hold
    back the others."""
    now = timezone.now()
    with transaction.atomic():
        # Lock the rows and read only what may have changed while we sent
        # (state, attempts): a row still queued on this attempt is the one we
        # claimed, so the claimed instance is recorded as is. Anything else
        # (canceled, reported by a fast callback, re-claimed) is loaded afresh.
        current = {
            pk: (state, attempts)
            for pk, state, attempts in Message.objects.select_for_update()
            .filter(pk__in=[i.message_id for i in items])
            .values_list("pk", "state", "attempts")
        }
        changed = [
            i.message_id
            for i in items
            if i.message_id in current and current[i.message_id] != (MessageState.QUEUED, i.attempt)
        ]
        fresh = Message.objects.in_bulk(changed) if changed else {}
        locked = {
            i.message_id: fresh.get(i.message_id, i.message)
            for i in items
            if i.message_id in current
        }
        kinds = {}
        rows = []
        for item, result in zip(items, results, strict=True):
            key = item.connector_key
            if key not in kinds:
                kinds[key] = cache.get(key).kind if key else "none"
            rows.append(
                {
                    "message_id": item.message_id,
                    "connector_id": item.connector_id,
                    "connector_kind": kinds[key],
                    "number": item.attempt,
                    "outcome": result.outcome
                    if not result.retryable
                    else f"{result.outcome}_retry",
                    "retryable": result.retryable,
                    "http_status": result.http_status,
                    "duration_ms": result.duration_ms,
                    "error": result.error[:2000],
                    "record": result.record,
                    "created_at": now,
                }
            )
        insert_rows(DeliveryAttempt, rows)
        pairs = [
            (locked[item.message_id], item, result)
            for item, result in zip(items, results, strict=True)
            if item.message_id in locked
        ]
        batch_stats: Counter = Counter()
        try:
            with transaction.atomic():
                _record_group(pairs, actor, batch_stats)
        except Exception:
            logger.exception(
                "recording a batch of %s sends failed; recording one by one", len(pairs)
            )
            batch_stats = Counter()
            fresh = Message.objects.select_for_update().in_bulk([m.pk for m, _, _ in pairs])
            for message, item, result in pairs:
                message = fresh.get(message.pk)
                if message is None:
                    continue
                try:
                    with transaction.atomic():
                        _record_group([(message, item, result)], actor, batch_stats)
                except Exception:
                    # A receiver failed: leave the message queued; the lease expiry retries it.
                    logger.exception("could not record the send of message %s", item.message_id)
                    batch_stats["record_errors"] += 1
        stats.update(batch_stats)


def _record_group(pairs, actor, stats) -> None:
    changes: list[tuple] = []
    changed: list[Message] = []
    for message, item, result in pairs:
        if _record_one(message, item, result, changes, stats) == "save":
            changed.append(message)
        elif result.ok and message.state == MessageState.CANCELED:
            audit_record(
                actor=actor,
                action="message.sent_after_cancel",
                target=message,
                organization=message.organization_id,
                reason="the send was in flight when the message was canceled",
            )
    bulk_save(changed, RECORD_FIELDS)
    record_changes(changes, actor=actor)


def _send_batch(claimed: list[_Claimed], cache: _ConnectorCache) -> list[tuple]:
    """Send a claimed batch, per connector: [(items, results), ...]. No
    database access (runs on the sender thread)."""
    groups: dict[tuple, list[_Claimed]] = defaultdict(list)
    for item in claimed:
        groups[item.connector_key].append(item)
    sent = []
    for key, items in groups.items():
        if key is None:
            results = [
                SendResult.failed(
                    "no enabled connector serves this channel for the organization",
                    retryable=False,
                )
                for _ in items
            ]
        else:
            results = cache.get(key).send_many([i.outbound for i in items])
        sent.append((items, results))
    return sent


def _record_batch(sent: list[tuple], cache, actor, stats) -> None:
    for items, results in sent:
        _record(items, results, cache, actor, stats)


def messages_dispatch_due(*, batch_size: int = 200, max_batches: int | None = None) -> dict:
    """Send every due message (scheduled_for <= now, or a queued retry whose
    time has come); return counts. Safe to run on several workers at once:
    skip_locked hands each row to one of them. Audits every state change
    (actor `system:messaging.dispatch`) and writes one DeliveryAttempt per send.
    Batch N is sent while batch N-1 is recorded and N+1 claimed (each claimed
    row carries a lease, so a crash mid-way retries it)."""
    actor = Actor.system("messaging.dispatch")
    cache = _ConnectorCache()
    templates: dict[int, MessageTemplate] = {}
    stats: Counter = Counter()
    batches = 0
    # One batch is sent (on the sender thread, no database access, no row
    # locked) while the previous one is recorded and the next one claimed
    # here: the database round trips and the HTTP waits overlap.
    overlap = getattr(settings, "BATON_MESSAGING_OVERLAP_SENDS", True)
    sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="messaging-send")
    in_flight = None
    try:
        while max_batches is None or batches < max_batches:
            claimed, locked = _claim(batch_size, cache, templates, actor, stats)
            if not locked:
                break
            batches += 1
            stats["claimed"] += len(claimed)
            if overlap:
                sending = sender.submit(_send_batch, claimed, cache)
            else:
                sending = Future()
                sending.set_result(_send_batch(claimed, cache))
            if in_flight is not None:
                previous, in_flight = in_flight, None
                _record_batch(previous.result(), cache, actor, stats)
            in_flight = sending
        if in_flight is not None:
            previous, in_flight = in_flight, None
            _record_batch(previous.result(), cache, actor, stats)
    finally:
        if in_flight is not None:
            # Something failed while this batch was being sent: record its
            # outcomes anyway; if that fails too, the lease expiry retries it.
            try:
                _record_batch(in_flight.result(), cache, actor, stats)
            except Exception:
                logger.exception("could not record a sent batch; its lease expiry retries it")
        sender.shutdown(wait=True)
        cache.close()
    stats["batches"] = batches
    return dict(stats)
