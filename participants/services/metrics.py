"""Daily strain metrics per program (`ProgramMetricsSnapshot`).

`metrics_snapshot_record(program=, day=)` computes one UTC day's figures with
a handful of bounded queries (each filtered to the day's window over indexed
time columns) and upserts the row for (program, day), so recomputing is
harmless. The scheduled job `participants.metrics_snapshot` records
yesterday's final figures and today's provisional ones shortly after
midnight UTC; the console dashboard reads its history from these rows.

What counts:
- active participants: non-terminal enrollments at the end of the day
  (exact for past days too: a terminal enrollment's `state_changed_at` is
  when it became terminal and never moves again);
- automated step completions: via a partner event or a message; manual: via
  a coordinator (`StepInstance.completed_via`), by `completed_at`;
- manual interventions: audit rows written by people (`actor_kind="user"`)
  on the program's queue items, enrollments and steps (not their automatic
  consequences: steps skipped by a withdrawal, items resolving themselves);
  an action on an item that belongs to no program (a webhook endpoint's) is
  counted for none. Transitions and webhook deliveries are still the
  organization's (exact for an organization that runs one program);
- strain index: manual interventions in the 7 days ending with the day per
  100 active participants.

Snapshots are derived data: they write no audit row and no outbox event.
"""

from __future__ import annotations

import statistics
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Count, Q
from django.utils import timezone

from participants.models import (
    TERMINAL_STATES,
    Enrollment,
    ProgramMetricsSnapshot,
    StepInstance,
    StepState,
)
from programs.models import (
    ACTIVE_EXCEPTION_STATES,
    AuditEvent,
    ExceptionState,
    OpsException,
    Program,
    ProgramState,
)

HUMAN_ACTION_PREFIXES = ("exception.", "enrollment.", "step.")
AUTOMATED_VIA = ("event", "message")


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def _human_actions() -> Q:
    q = Q()
    for prefix in HUMAN_ACTION_PREFIXES:
        q |= Q(action__startswith=prefix)
    # Consequences of one action are not counted again: steps skipped because
    # the coordinator withdrew the enrollment, items that resolved themselves.
    consequences = Q(action="exception.auto_resolved") | Q(
        action="step.skipped", metadata__via="stage_left"
    )
    return q & Q(actor_kind="user") & ~consequences


def manual_interventions(program, start, end) -> int:
    """People's actions in [start, end) on the program's queue items,
    enrollments and steps."""
    return len(_intervention_times(program, start, end))


def _intervention_times(program, start, end) -> list:
    """When each of those actions happened. The audit trail names objects,
    not programs: the window's human actions of the organization (a few per
    participant and week, read through `audit_user_actions_idx`) are matched
    to the program by their objects, one id lookup per kind of object."""
    rows = list(
        AuditEvent.objects.filter(
            _human_actions(),
            organization_id=program.organization_id,
            created_at__gte=start,
            created_at__lt=end,
        ).values_list("object_type", "object_id", "created_at")
    )
    ids_by_type: dict[str, set[int]] = {}
    for object_type, object_id, _at in rows:
        if object_type in _PROGRAM_OF and object_id.isdecimal():
            ids_by_type.setdefault(object_type, set()).add(int(object_id))
    ours: set[tuple[str, str]] = set()
    for object_type, ids in ids_by_type.items():
        model, program_lookup = _PROGRAM_OF[object_type]
        matching = model.objects.filter(pk__in=ids, **{program_lookup: program.pk})
        ours.update((object_type, str(pk)) for pk in matching.values_list("pk", flat=True))
    return [at for object_type, object_id, at in rows if (object_type, object_id) in ours]


# object_type of an audit row -> (model, lookup of its program id)
_PROGRAM_OF = {
    "programs.opsexception": (OpsException, "program_id"),
    "participants.enrollment": (Enrollment, "program_id"),
    "participants.stepinstance": (StepInstance, "enrollment__program_id"),
}


def active_participants(program, at) -> int:
    return (
        Enrollment.objects.filter(program=program, created_at__lt=at)
        .exclude(state__in=TERMINAL_STATES, state_changed_at__lt=at)
        .count()
    )


def compute_day(program, day: date, *, now=None) -> dict:
    """The figures of `program` for UTC `day` (up to `now` if the day is today)."""
    now = now or timezone.now()
    start, end = day_bounds(day)
    end = min(end, now) if start <= now else end
    org_id = program.organization_id

    enrollments = Enrollment.objects.filter(program=program)
    active = active_participants(program, end)
    opened_enrollments = enrollments.filter(created_at__gte=start, created_at__lt=end).count()

    steps = StepInstance.objects.filter(
        enrollment__program=program,
        state=StepState.COMPLETED,
        completed_at__gte=start,
        completed_at__lt=end,
    ).aggregate(
        automated=Count("pk", filter=Q(completed_via__in=AUTOMATED_VIA)),
        manual=Count("pk", filter=Q(completed_via="coordinator")),
    )

    items = OpsException.objects.filter(organization_id=org_id, program=program)
    opened = items.filter(first_seen_at__gte=start, first_seen_at__lt=end).count()
    resolved_rows = list(
        items.filter(
            state=ExceptionState.RESOLVED, resolved_at__gte=start, resolved_at__lt=end
        ).values_list("first_seen_at", "resolved_at")
    )
    median = (
        round(statistics.median((r - f).total_seconds() for f, r in resolved_rows))
        if resolved_rows
        else None
    )
    # Items still active at the end of the day: opened by then and not closed by then.
    backlog = (
        items.filter(first_seen_at__lt=end)
        .filter(Q(state__in=ACTIVE_EXCEPTION_STATES) | Q(resolved_at__gte=end))
        .count()
    )

    audit = AuditEvent.objects.filter(
        organization_id=org_id, created_at__gte=start, created_at__lt=end
    )
    audit_counts = audit.aggregate(
        transitions=Count(
            "pk", filter=Q(action__startswith="enrollment.") & ~Q(action="enrollment.opened")
        ),
    )
    # The day lies within the week that ends with it: one read serves both.
    week = _intervention_times(program, end - timedelta(days=7), end)
    audit_counts["manual"] = sum(1 for at in week if at >= start)
    interventions_7d = len(week)

    deliveries = {"total": 0, "failed": 0}
    try:
        from integrations.models import Attempt

        deliveries = Attempt.objects.filter(
            delivery__organization_id=org_id, started_at__gte=start, started_at__lt=end
        ).aggregate(total=Count("pk"), failed=Count("pk", filter=Q(succeeded=False)))
    except ImportError:  # pragma: no cover - integrations without webhooks
        pass

    messages = {"total": 0, "suppressed": 0}
    try:
        from messaging.models import Message

        messages = Message.objects.filter(
            program=program, created_at__gte=start, created_at__lt=end
        ).aggregate(total=Count("pk"), suppressed=Count("pk", filter=Q(state="suppressed")))
    except ImportError:  # pragma: no cover
        pass

    return {
        "active_participants": active,
        "enrollments_opened": opened_enrollments,
        "transitions": audit_counts["transitions"],
        "steps_automated": steps["automated"],
        "steps_manual": steps["manual"],
        "exceptions_opened": opened,
        "exceptions_resolved": len(resolved_rows),
        "median_resolve_seconds": median,
        "backlog": backlog,
        "deliveries": deliveries["total"] or 0,
        "deliveries_failed": deliveries["failed"] or 0,
        "messages": messages["total"] or 0,
        "messages_suppressed": messages["suppressed"] or 0,
        "manual_interventions": audit_counts["manual"],
        "interventions_7d": interventions_7d,
        "strain_index": round(100 * interventions_7d / active, 2) if active else None,
    }


def weighted_median(pairs) -> float:
    """Median of values weighted by counts: [(value, count), ...]."""
    pairs = sorted((v, n) for v, n in pairs if n)
    total = sum(n for _, n in pairs)
    running = 0
    for value, n in pairs:
        running += n
        if running * 2 >= total:
            return value
    return 0.0


def metrics_snapshot_record(*, program, day: date, now=None) -> ProgramMetricsSnapshot:
    """Compute and upsert `program`'s snapshot for UTC `day`. Idempotent."""
    now = now or timezone.now()
    values = compute_day(program, day, now=now)
    snapshot, _ = ProgramMetricsSnapshot.objects.update_or_create(
        program=program,
        day=day,
        defaults={**values, "organization_id": program.organization_id, "computed_at": now},
    )
    return snapshot


def metrics_snapshot_all(*, now=None, days_back: int = 1) -> int:
    """Snapshot every running program for today and the `days_back` days
    before (the scheduled job: yesterday's final figures, today's so far)."""
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    count = 0
    programs = Program.objects.filter(state__in=[ProgramState.ACTIVE, ProgramState.PAUSED])
    for program in programs:
        for back in range(days_back, -1, -1):
            metrics_snapshot_record(program=program, day=today - timedelta(days=back), now=now)
            count += 1
    return count
