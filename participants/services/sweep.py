"""The SLA sweep: mark steps past their due date as overdue, set-based.

Per batch (one short transaction each, memory bounded by `batch_size`):

1. read up to `batch_size` (step id, enrollment id) pairs of pending steps
   with `due_at < now` (partial index `step_pending_due_idx`);
2. lock their enrollments in id order (the same order transitions and event
   ingestion use, so no deadlocks) to number their outbox events;
3. one `UPDATE … SET state='overdue' … WHERE id IN (…) AND state='pending'
   RETURNING …` marks them (a step completed meanwhile is left alone);
4. bulk-insert one `sla_breach` exception-queue item per overdue step that
   has no active item yet (dedup key `sla_breach:step:<id>`, backed by the
   partial unique index on active items: never two open items per step),
   the audit rows (`step.overdue`, `exception.opened`) and the outbox events
   (`participants.step.overdue`, `programs.exception.opened`).

A step completed late closes its item automatically (steps.close_step).
"""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from config.request_id import get_request_id
from integrations import outbox as outbox_module
from integrations.event_types import event_type
from integrations.models import OutboxEvent
from participants.models import Enrollment, StepInstance, StepState
from programs.actors import Actor
from programs.models import (
    ACTIVE_EXCEPTION_STATES,
    SEVERITY_RANK,
    AuditEvent,
    ExceptionState,
    OpsException,
)
from programs.services import exception_raise

SWEEP_ACTOR = Actor.system("participants.sla_sweep")
DEFAULT_BATCH_SIZE = 2000
_STEP_TABLE = StepInstance._meta.db_table


def sla_sweep(*, now=None, batch_size: int = DEFAULT_BATCH_SIZE) -> dict:
    """Mark every pending step with `due_at < now` overdue (see module docstring).

    Idempotent: a second run finds nothing. Emits participants.step.overdue
    per step and programs.exception.opened per new sla_breach item; audited as
    step.overdue and exception.opened (system actor). Returns counts.
    """
    now = now or timezone.now()
    totals = {"overdue": 0, "exceptions_opened": 0, "batches": 0}
    while True:
        marked, opened, candidates = _sweep_batch(now, batch_size)
        if candidates == 0:
            break
        totals["batches"] += 1
        totals["overdue"] += marked
        totals["exceptions_opened"] += opened
        if candidates < batch_size:
            break
    return totals


def _sweep_batch(now, batch_size) -> tuple[int, int, int]:
    with transaction.atomic():
        pairs = list(
            StepInstance.objects.filter(
                state=StepState.PENDING, due_at__isnull=False, due_at__lt=now
            )
            .order_by("due_at")
            .values_list("pk", "enrollment_id")[:batch_size]
        )
        if not pairs:
            return 0, 0, 0
        enrollment_ids = sorted({e for _s, e in pairs})
        enrollments = {
            row[0]: row
            for row in Enrollment.objects.select_for_update(of=("self",))
            .filter(pk__in=enrollment_ids)
            .order_by("pk")
            .values_list("pk", "event_sequence", "organization_id", "program_id")
        }
        rows = _mark_overdue([s for s, _e in pairs], now)
        if not rows:
            return 0, 0, len(pairs)
        opened = _record(rows, enrollments, now)
    return len(rows), opened, len(pairs)


def _mark_overdue(step_ids: list[int], now) -> list[tuple]:
    placeholders = ", ".join(["%s"] * len(step_ids))
    sql = (
        f"UPDATE {_STEP_TABLE} SET state = %s, overdue_at = %s "  # noqa: S608 (fixed names)
        f"WHERE id IN ({placeholders}) AND state = %s AND due_at < %s "
        "RETURNING id, enrollment_id, step_key, title, severity, due_at, kind"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [StepState.OVERDUE, now, *step_ids, StepState.PENDING, now])
        rows = cursor.fetchall()
    if connection.vendor == "sqlite":  # SQLite returns text for datetimes in raw SQL
        from django.utils.dateparse import parse_datetime

        rows = [
            (*r[:5], parse_datetime(r[5]) if isinstance(r[5], str) else r[5], r[6]) for r in rows
        ]
    rows.sort(key=lambda r: r[0])
    return rows


def _record(rows, enrollments, now) -> int:
    request_id = get_request_id()
    sequences = {pk: row[1] for pk, row in enrollments.items()}
    keys = {row[0]: f"sla_breach:step:{row[0]}" for row in rows}
    organization_ids = {enrollments[r[1]][2] for r in rows}
    already = set(
        OpsException.objects.filter(
            organization_id__in=organization_ids,
            dedup_key__in=list(keys.values()),
            state__in=ACTIVE_EXCEPTION_STATES,
        ).values_list("dedup_key", flat=True)
    )
    new_items = []
    for step_id, enrollment_id, step_key, title, severity, due_at, _kind in rows:
        if keys[step_id] in already:
            continue
        _e, _seq, organization_id, program_id = enrollments[enrollment_id]
        severity = severity if severity in SEVERITY_RANK else "medium"
        new_items.append(
            OpsException(
                organization_id=organization_id,
                program_id=program_id,
                kind="sla_breach",
                severity=severity,
                priority=SEVERITY_RANK[severity],
                title=f"Overdue: {title} (enrollment #{enrollment_id})"[:300],
                detail=f"Step {step_key} was due {due_at.isoformat()}.",
                subject_type="participants.stepinstance",
                subject_id=str(step_id),
                dedup_key=keys[step_id],
                first_seen_at=now,
                last_seen_at=now,
                due_by=now + settings.BATON_EXCEPTION_SLA[severity],
                state=ExceptionState.OPEN,
                context={"enrollment_id": enrollment_id, "step_key": step_key},
            )
        )
    try:
        with transaction.atomic():
            created = OpsException.objects.bulk_create(new_items)
    except IntegrityError:
        # Someone opened an item for one of these steps meanwhile: fall back to
        # the one-by-one service, which deduplicates under the unique index.
        created = []
        for item in new_items:
            exception_raise(
                organization=item.organization_id,
                program=item.program_id,
                kind="sla_breach",
                severity=item.severity,
                title=item.title,
                detail=item.detail,
                dedup_key=item.dedup_key,
                subject_type=item.subject_type,
                subject_id=item.subject_id,
                context=item.context,
                actor=SWEEP_ACTOR,
            )
    items_by_step = {int(item.subject_id): item for item in created}

    audits, events = [], []
    for step_id, enrollment_id, step_key, _title, _severity, due_at, kind in rows:
        organization_id = enrollments[enrollment_id][2]
        sequences[enrollment_id] += 1
        item = items_by_step.get(step_id)
        audits.append(
            _audit(
                now,
                organization_id,
                "step.overdue",
                "participants.stepinstance",
                step_id,
                request_id,
                from_state=StepState.PENDING,
                to_state=StepState.OVERDUE,
                metadata={
                    "enrollment_id": enrollment_id,
                    "step_key": step_key,
                    "due_at": due_at.isoformat(),
                    "exception_id": item.pk if item else None,
                },
            )
        )
        events.append(
            OutboxEvent(
                organization_id=organization_id,
                event_type="participants.step.overdue",
                payload={
                    "enrollment_id": enrollment_id,
                    "step_id": step_id,
                    "step_key": step_key,
                    "kind": kind,
                    "step_state": StepState.OVERDUE,
                    "due_at": due_at.isoformat(),
                    "exception_id": item.pk if item else None,
                },
                sequence_key=f"enrollment:{enrollment_id}",
                sequence=sequences[enrollment_id],
                occurred_at=now,
                created_at=now,
            )
        )
        if item is not None:
            # What exception_raise does per item, in bulk: the audit row and
            # the outbox event integrations writes on `exception_opened`.
            audits.append(
                _audit(
                    now,
                    organization_id,
                    "exception.opened",
                    "programs.opsexception",
                    item.pk,
                    request_id,
                    to_state=item.state,
                    reason=item.title[:500],
                    metadata={
                        "kind": item.kind,
                        "severity": item.severity,
                        "dedup_key": item.dedup_key,
                    },
                )
            )
            events.append(
                OutboxEvent(
                    organization_id=organization_id,
                    event_type="programs.exception.opened",
                    payload={
                        "exception_id": item.pk,
                        "kind": item.kind,
                        "severity": item.severity,
                        "state": item.state,
                        "program_id": item.program_id,
                        "subject_type": item.subject_type,
                        "subject_id": item.subject_id,
                        "occurred_at": now.isoformat(),
                    },
                    occurred_at=now,
                    created_at=now,
                )
            )
    AuditEvent.objects.bulk_create(audits)
    _outbox_bulk(events)
    # One UPDATE per distinct increment (nearly always just "+1"), not a CASE per row.
    by_increment: dict[int, list[int]] = {}
    for pk, seq in sequences.items():
        if seq != enrollments[pk][1]:
            by_increment.setdefault(seq - enrollments[pk][1], []).append(pk)
    for increment, pks in by_increment.items():
        Enrollment.objects.filter(pk__in=pks).update(event_sequence=F("event_sequence") + increment)
    return len(created)


def _audit(now, organization_id, action, object_type, object_id, request_id, **fields):
    return AuditEvent(
        created_at=now,
        organization_id=organization_id,
        actor_kind=SWEEP_ACTOR.kind,
        actor_id=SWEEP_ACTOR.id,
        actor_label=SWEEP_ACTOR.label,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        request_id=request_id,
        **fields,
    )


def _outbox_bulk(events: list[OutboxEvent]) -> None:
    """outbox_write for many rows: same checks, one INSERT, same after-commit hooks."""
    for name in {e.event_type for e in events}:
        event_type(name)
    created = OutboxEvent.objects.bulk_create(events)
    hooks = list(outbox_module._after_commit_hooks)
    if hooks:
        ids = [e.pk for e in created]
        transaction.on_commit(lambda: [hook(ids) for hook in hooks])
