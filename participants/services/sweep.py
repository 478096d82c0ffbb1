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
   (`participants.step.overdue`, `programs.exception.opened`);
5. hand the outbox events to integrations' after-commit hooks
   (`integrations.outbox.outbox_announce`, joining the transaction's batch),
   but only those some hook wants: `outbox_wanted` asks once per batch which
   (organization, event type) pairs have a subscriber (for the webhook
   fan-out: an enabled endpoint of the organization that subscribes to the
   type). The others are written with `dispatched_at` already set, which is
   what the fan-out would do after commit finding no endpoint, minus the
   reload and the UPDATE. (An endpoint enabled in the instant between that
   question and the commit misses these events, as it would miss them if it
   were enabled a moment later.)

On PostgreSQL steps 3 and 4 are one statement per batch, run entirely in the
database (`_sweep_batch_sql`): a data-modifying CTE marks the steps, inserts
the items (`ON CONFLICT … DO NOTHING` on that unique index), the audit rows and
the outbox events (JSON built with `jsonb_build_object`), and bumps the
enrollments' `event_sequence`. SQLite keeps the Python path
(`_sweep_batch_python`). Both write the same rows; a PostgreSQL test compares
them field by field.

A step completed late closes its item automatically (steps.close_step).
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from config.request_id import get_request_id
from integrations.event_types import event_type
from integrations.models import OutboxEvent
from integrations.outbox import outbox_announce, outbox_wanted
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
_EVENT_TYPES = ("participants.step.overdue", "programs.exception.opened")
_LOCK_SQL = (
    "SELECT id, organization_id, program_id, event_sequence "  # noqa: S608 (fixed names)
    f"FROM {Enrollment._meta.db_table} WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE"
)


def sla_sweep(*, now=None, batch_size: int = DEFAULT_BATCH_SIZE) -> dict:
    """Mark every pending step with `due_at < now` overdue (see module docstring).

    Idempotent: a second run finds nothing. Emits participants.step.overdue
    per step and programs.exception.opened per new sla_breach item; audited as
    step.overdue and exception.opened (system actor). Returns counts.
    """
    now = now or timezone.now()
    batch = _sweep_batch_sql if connection.vendor == "postgresql" else _sweep_batch_python
    return _run(now, batch_size, batch)


def _run(now, batch_size, batch) -> dict:
    totals = {"overdue": 0, "exceptions_opened": 0, "batches": 0}
    while True:
        marked, opened, candidates = batch(now, batch_size)
        if candidates == 0:
            break
        totals["batches"] += 1
        totals["overdue"] += marked
        totals["exceptions_opened"] += opened
        if candidates < batch_size:
            break
    return totals


def _candidates(now, batch_size) -> list[tuple[int, int]]:
    """Up to `batch_size` (step id, enrollment id) pairs, oldest due first."""
    return list(
        StepInstance.objects.filter(state=StepState.PENDING, due_at__isnull=False, due_at__lt=now)
        .order_by("due_at")
        .values_list("pk", "enrollment_id")[:batch_size]
    )


def _sweep_batch_python(now, batch_size) -> tuple[int, int, int]:
    with transaction.atomic():
        pairs = _candidates(now, batch_size)
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
    if connection.vendor == "sqlite":
        rows = [(*r[:5], _aware(r[5]), r[6]) for r in rows]
    rows.sort(key=lambda r: r[0])
    return rows


def _aware(value):
    """SQLite's raw SQL returns a stored datetime as naive UTC text: the
    aware UTC datetime PostgreSQL returns, so payloads carry the offset."""
    from django.utils.dateparse import parse_datetime

    if isinstance(value, str):
        value = parse_datetime(value)
    return value if timezone.is_aware(value) else value.replace(tzinfo=UTC)


def _due_text(due_at) -> str:
    """The due time as an item's detail shows it (the SQL path's to_char)."""
    return due_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


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
                detail=f"Step {step_key} was due {_due_text(due_at)} UTC.",
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
    """outbox_write for many rows: same checks, one INSERT, and the after-commit
    hooks get the ids of the events some hook wants (`outbox_wanted`); the
    others are written already dispatched, as the fan-out would leave them."""
    for name in {e.event_type for e in events}:
        event_type(name)
    wanted = outbox_wanted((e.organization_id, e.event_type) for e in events)
    written = timezone.now()
    for e in events:
        if (e.organization_id, e.event_type) not in wanted:
            e.dispatched_at = written
    created = OutboxEvent.objects.bulk_create(events)
    outbox_announce(e.pk for e in created if e.dispatched_at is None)


# --- PostgreSQL: one statement per batch, everything inside the database ---------------------


def _iso(column: str) -> str:
    """SQL for Python's `datetime.isoformat()` of a UTC timestamptz (what the
    Python path writes): microseconds only when non-zero, offset `+00:00`."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (
        f"(to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN to_char({utc}, 'US') = "
        f"'000000' THEN '' ELSE '.' || to_char({utc}, 'US') END || '+00:00')"
    )


def _sweep_sql() -> str:
    step, enrollment = StepInstance._meta.db_table, Enrollment._meta.db_table
    item, audit, outbox = (
        OpsException._meta.db_table,
        AuditEvent._meta.db_table,
        OutboxEvent._meta.db_table,
    )
    active = ", ".join(f"'{state}'" for state in ACTIVE_EXCEPTION_STATES)
    # Every CTE sees the same snapshot (taken after the enrollment locks, see
    # _sweep_batch_sql): `rows` reads the enrollments' event_sequence before
    # `bump` adds to it, and the inserts see one another only via RETURNING.
    return f"""
WITH marked AS (
    UPDATE {step} s SET state = 'overdue', overdue_at = %(now)s
    FROM unnest(%(step_ids)s::bigint[], %(step_enrollments)s::bigint[],
                %(step_organizations)s::bigint[], %(step_programs)s::bigint[],
                %(step_sequences)s::bigint[])
        AS c(id, enrollment_id, organization_id, program_id, event_sequence)
    WHERE s.id = c.id AND s.enrollment_id = c.enrollment_id
      AND s.state = 'pending' AND s.due_at < %(now)s
    RETURNING s.id, s.enrollment_id, s.step_key, s.title, s.severity, s.due_at, s.kind,
        c.organization_id, c.program_id, c.event_sequence
), rows AS (
    -- The enrollment's columns come with each step from the lock statement
    -- (read under the lock, so event_sequence is current): no join back.
    SELECT m.id, m.enrollment_id, m.step_key, m.title, m.kind, {_iso("m.due_at")} AS due_iso,
           to_char(m.due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS due_text,
           m.organization_id, m.program_id,
           m.event_sequence + row_number() OVER (PARTITION BY m.enrollment_id ORDER BY m.id)
               AS seq,
           sev.name AS severity, sev.rank AS priority, sev.due_by,
           'sla_breach:step:' || m.id AS dedup_key
    FROM marked m
    JOIN unnest(%(sev_names)s::text[], %(sev_ranks)s::int[], %(sev_due)s::timestamptz[])
        AS sev(name, rank, due_by)
      ON sev.name = CASE WHEN m.severity = ANY(%(sev_names)s::text[])
                         THEN m.severity ELSE 'medium' END
), ex AS (
    INSERT INTO {item} (organization_id, program_id, kind, severity, priority, title, detail,
        subject_type, subject_id, dedup_key, occurrences, first_seen_at, last_seen_at, due_by,
        state, assignee_id, snoozed_until, resolution_note, resolved_at, resolved_by,
        auto_resolved, context, updated_at)
    SELECT organization_id, program_id, 'sla_breach', severity, priority,
        left('Overdue: ' || title || ' (enrollment #' || enrollment_id || ')', 300),
        'Step ' || step_key || ' was due ' || due_text || ' UTC.',
        'participants.stepinstance', id::text, dedup_key, 1, %(now)s, %(now)s, due_by,
        'open', NULL, NULL, '', NULL, '', false,
        jsonb_build_object('enrollment_id', enrollment_id, 'step_key', step_key), %(written)s
    FROM rows ORDER BY rows.id  -- the step id, not the text id::text above
    ON CONFLICT (organization_id, dedup_key) WHERE state IN ({active}) DO NOTHING
    RETURNING id, subject_id::bigint AS step_id, organization_id, program_id, severity, title,
        dedup_key, state
), item_of AS (
    -- step id -> new item id, for the step.overdue rows. One jsonb object
    -- looked up by key rather than a join: CTE scans carry no statistics, so a
    -- join here was planned as a nested loop over 2,000 x 2,000 rows.
    SELECT jsonb_object_agg(step_id::text, id) AS ids FROM ex
), overdue AS (
    SELECT r.*, (SELECT ids FROM item_of) -> (r.id::text) AS exception_id FROM rows r
), au AS (
    INSERT INTO {audit} (created_at, organization_id, actor_kind, actor_id, actor_label, action,
        object_type, object_id, from_state, to_state, reason, request_id, ip_address,
        user_agent, metadata)
    SELECT %(now)s, organization_id, %(actor_kind)s, %(actor_id)s, %(actor_label)s, action,
        object_type, object_id, from_state, to_state, reason, %(request_id)s, NULL, '', metadata
    FROM (
        SELECT id AS step_id, 0 AS part, organization_id, 'step.overdue' AS action,
            'participants.stepinstance' AS object_type, id::text AS object_id,
            'pending' AS from_state, 'overdue' AS to_state, '' AS reason,
            jsonb_build_object('enrollment_id', enrollment_id, 'step_key', step_key,
                'due_at', due_iso, 'exception_id', coalesce(exception_id, 'null'::jsonb))
                AS metadata
        FROM overdue
        UNION ALL
        SELECT step_id, 1, organization_id, 'exception.opened', 'programs.opsexception',
            id::text, '', state, left(title, 500),
            jsonb_build_object('kind', 'sla_breach', 'severity', severity,
                'dedup_key', dedup_key)
        FROM ex
    ) a ORDER BY step_id, part
    RETURNING id
), ob AS (
    INSERT INTO {outbox} (organization_id, event_type, payload, sequence_key, sequence,
        occurred_at, created_at, dispatched_at)
    SELECT organization_id, event_type, payload, sequence_key, sequence, %(now)s, %(now)s,
        CASE WHEN organization_id = ANY(wanted) THEN NULL ELSE %(written)s END
    FROM (
        SELECT id AS step_id, 0 AS part, organization_id,
            'participants.step.overdue' AS event_type, %(wanted_overdue)s::bigint[] AS wanted,
            jsonb_build_object('enrollment_id', enrollment_id, 'step_id', id,
                'step_key', step_key, 'kind', kind, 'step_state', 'overdue',
                'due_at', due_iso, 'exception_id', coalesce(exception_id, 'null'::jsonb))
                AS payload,
            'enrollment:' || enrollment_id AS sequence_key, seq::integer AS sequence
        FROM overdue
        UNION ALL
        SELECT step_id, 1, organization_id, 'programs.exception.opened',
            %(wanted_opened)s::bigint[],
            jsonb_build_object('exception_id', id, 'kind', 'sla_breach',
                'severity', severity, 'state', state, 'program_id', program_id,
                'subject_type', 'participants.stepinstance', 'subject_id', step_id::text,
                'occurred_at', %(now_iso)s::text),
            '', NULL
        FROM ex
    ) o ORDER BY step_id, part
    RETURNING id, dispatched_at IS NULL AS announce
), bump AS (
    UPDATE {enrollment} e SET event_sequence = e.event_sequence + c.n
    FROM (SELECT enrollment_id, count(*) AS n FROM marked GROUP BY enrollment_id) c
    WHERE e.id = c.enrollment_id
    RETURNING e.id
)
SELECT (SELECT count(*) FROM marked), (SELECT count(*) FROM ex),
       (SELECT array_agg(id ORDER BY id) FROM ob WHERE announce), (SELECT count(*) FROM bump)
"""  # noqa: S608 (table names from model metadata, values bound)


def _sweep_batch_sql(now, batch_size) -> tuple[int, int, int]:
    """One batch on PostgreSQL: three statements in one transaction (plus
    `outbox_wanted`'s small endpoint query).

    1. the candidate (step id, enrollment id) pairs (partial index);
    2. `SELECT … FOR UPDATE` of their enrollments, ordered by id;
    3. the data-modifying CTE of `_sweep_sql` (mark, items, audit, outbox, sequences).

    Why this is safe against concurrent transitions: every service that
    changes a step or numbers an enrollment's events (transitions, event
    ingestion, step_complete/skip, pause/resume) locks the enrollment row
    first, and locks several in id order; step 2 takes the same locks in the
    same order, so no deadlock, and once it returns no other transaction is
    changing those enrollments or their steps. Statement 3 starts after that
    (READ COMMITTED: a fresh snapshot per statement), so it sees every
    committed change: a step completed, skipped or paused (due_at cleared)
    while we waited fails `state = 'pending' AND due_at < now` and is left
    alone, and `event_sequence` is the current value, which only we can move
    until commit, so the numbers given out are gapless and unique. Only pairs
    whose enrollment was locked reach statement 3, and it marks a step only
    if it still belongs to that enrollment: steps of enrollments not in the
    locked set are never marked.
    """
    for name in _EVENT_TYPES:
        event_type(name)  # refuse unregistered names, as outbox_write does
    severities = list(SEVERITY_RANK)
    with transaction.atomic():
        pairs = _candidates(now, batch_size)
        if not pairs:
            return 0, 0, 0
        enrollment_ids = sorted({e for _s, e in pairs})
        with connection.cursor() as cursor:
            cursor.execute(_LOCK_SQL, [enrollment_ids])
            locked = {row[0]: row for row in cursor.fetchall()}
            organizations = {row[1] for row in locked.values()}
            # (step, enrollment, organization, program, event_sequence) per
            # step whose enrollment is locked (an enrollment may be gone)
            mine = [(s, *locked[e]) for s, e in pairs if e in locked]
            # Events no after-commit hook wants (no webhook endpoint of the
            # organization subscribes) are written already dispatched and not
            # announced: no fan-out reload and UPDATE after commit.
            wanted = outbox_wanted((org, name) for org in organizations for name in _EVENT_TYPES)
            # Every join of the statement below is a few thousand primary-key
            # (or 4-row) lookups. Left alone, the planner marks the steps by
            # hash-joining the ids with a scan of *all* pending past-due steps
            # (partial index step_pending_due_idx): 10,000 rows read to mark
            # 2,000, again in every batch. Lookups by id: 39 ms instead of
            # 76-106 ms per 2,000-step batch (EXPLAIN ANALYZE, 1M steps).
            with _only_nested_loops(cursor):
                marked, opened, outbox_ids = _run_sweep_sql(cursor, now, mine, wanted, severities)
        outbox_announce(outbox_ids or ())
    return marked, opened, len(pairs)


@contextmanager
def _only_nested_loops(cursor):
    """Planner settings for one statement: hash and merge joins off, then the
    previous values back. `set_config(…, true)` lasts until the end of the
    transaction, and when the sweep runs inside a caller's transaction that
    goes on after the batch. (On an error the batch's transaction or
    savepoint rolls back, and that undoes the settings too.)"""
    cursor.execute(
        "SELECT current_setting('enable_hashjoin'), current_setting('enable_mergejoin'),"
        " set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)"
    )
    hashjoin, mergejoin, _h, _m = cursor.fetchone()
    yield
    cursor.execute(
        "SELECT set_config('enable_hashjoin', %s, true), set_config('enable_mergejoin', %s, true)",
        [hashjoin, mergejoin],
    )


def _run_sweep_sql(cursor, now, mine, wanted, severities):
    cursor.execute(
        _sweep_sql(),
        {
            "now": now,
            "now_iso": now.isoformat(),
            "written": timezone.now(),
            "step_ids": [row[0] for row in mine],
            "step_enrollments": [row[1] for row in mine],
            "step_organizations": [row[2] for row in mine],
            "step_programs": [row[3] for row in mine],
            "step_sequences": [row[4] for row in mine],
            "wanted_overdue": _orgs_wanting(wanted, "participants.step.overdue"),
            "wanted_opened": _orgs_wanting(wanted, "programs.exception.opened"),
            "sev_names": severities,
            "sev_ranks": [SEVERITY_RANK[name] for name in severities],
            "sev_due": [now + settings.BATON_EXCEPTION_SLA[name] for name in severities],
            "actor_kind": SWEEP_ACTOR.kind,
            "actor_id": SWEEP_ACTOR.id,
            "actor_label": SWEEP_ACTOR.label[:200],
            "request_id": get_request_id(),
        },
    )
    marked, opened, outbox_ids, _bumped = cursor.fetchone()
    return marked, opened, outbox_ids


def _orgs_wanting(wanted: set[tuple[int, str]], name: str) -> list[int]:
    return sorted(org for org, event_type_name in wanted if event_type_name == name)
