"""The enrollment's own rows for the participant timeline (console)."""

from __future__ import annotations

from participants.models import ParticipantEvent
from programs.models import AuditEvent
from programs.timeline import TimelineRow


def enrollment_timeline(enrollment):
    """Transitions (from the audit trail), step changes and partner events."""
    audits = AuditEvent.objects.filter(
        object_type="participants.enrollment", object_id=str(enrollment.pk)
    ).order_by("created_at", "id")
    for row in audits:
        title = row.action.removeprefix("enrollment.").replace("_", " ")
        change = f"{row.from_state} → {row.to_state}" if row.from_state else row.to_state
        yield TimelineRow(
            at=row.created_at,
            kind="transition",
            title=title,
            detail=f"{change}{': ' + row.reason if row.reason else ''}",
            actor=row.actor_label,
        )
    for step in enrollment.steps.order_by("created_at", "id"):
        yield TimelineRow(at=step.created_at, kind="step", title=f"{step.title} started")
        if step.overdue_at:
            yield TimelineRow(
                at=step.overdue_at, kind="step", title=f"{step.title} overdue", actor="system"
            )
        if step.completed_at:
            yield TimelineRow(
                at=step.completed_at,
                kind="step",
                title=f"{step.title} {step.state}",
                detail=step.note,
                actor=step.completed_by,
            )
    events = ParticipantEvent.objects.filter(
        participant_id=enrollment.participant_id, received_at__gte=enrollment.created_at
    ).order_by("occurred_at", "id")
    for event in events:
        yield TimelineRow(
            at=event.occurred_at,
            kind="event",
            title=event.event_type,
            detail=f"{event.get_disposition_display()} (id {event.event_id})",
            actor=event.source,
        )
