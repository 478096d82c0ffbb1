"""The enrollment's own rows for the participant timeline (console).

`enrollment_timeline` is a windowed timeline contributor (see
participants.console.timeline): given `limit`, it returns at most `limit`
rows of each of its sources, nearest to the window's edge, so the page of a
participant with years of history reads a page's worth of rows, not all.
"""

from __future__ import annotations

from participants.models import ParticipantEvent
from programs.models import AuditEvent
from programs.timeline import TimelineRow

KINDS = ("transition", "step", "event")


def _window(qs, field, *, since, until, newest_first, limit):
    """Restrict `qs` to since <= field <= until, ordered towards the window's
    far edge (newest first or oldest first), LIMITed."""
    if since is not None:
        qs = qs.filter(**{f"{field}__gte": since})
    if until is not None:
        qs = qs.filter(**{f"{field}__lte": until})
    qs = qs.order_by(f"-{field}", "-id") if newest_first else qs.order_by(field, "id")
    return qs[:limit] if limit is not None else qs


def _in_window(at, since, until) -> bool:
    return at is not None and (since is None or at >= since) and (until is None or at <= until)


def enrollment_timeline(
    enrollment, *, since=None, until=None, limit=None, newest_first=False, kinds=None
):
    """Transitions (from the audit trail), step changes and partner events.

    Windowed contributor: only rows with since <= at <= until (inclusive,
    None: open), at most `limit` per source (the newest ones if
    `newest_first`, else the oldest), and only of `kinds` if given. Called
    with the enrollment alone, it returns everything (tests, small pages).
    Rows are not sorted across sources; the console merges them.
    """
    window = {"since": since, "until": until, "newest_first": newest_first, "limit": limit}
    rows: list[TimelineRow] = []
    if kinds is None or "transition" in kinds:
        # Only state changes: read-access rows about the enrollment (e.g.
        # "participant.timeline_viewed") are in the audit trail, not its story.
        audits = _window(
            AuditEvent.objects.filter(
                object_type="participants.enrollment",
                object_id=str(enrollment.pk),
                action__startswith="enrollment.",
            ),
            "created_at",
            **window,
        )
        for row in audits:
            title = row.action.removeprefix("enrollment.").replace("_", " ")
            change = f"{row.from_state} → {row.to_state}" if row.from_state else row.to_state
            rows.append(
                TimelineRow(
                    at=row.created_at,
                    kind="transition",
                    title=title,
                    detail=f"{change}{': ' + row.reason if row.reason else ''}",
                    actor=row.actor_label,
                )
            )
    if kinds is None or "step" in kinds:
        # An enrollment has a bounded number of steps (its workflow's); each
        # gives up to three rows, filtered to the window here.
        step_rows = []
        for step in enrollment.steps.order_by("created_at", "id"):
            step_rows.append(
                TimelineRow(at=step.created_at, kind="step", title=f"{step.title} started")
            )
            if step.overdue_at:
                step_rows.append(
                    TimelineRow(
                        at=step.overdue_at,
                        kind="step",
                        title=f"{step.title} overdue",
                        actor="system",
                    )
                )
            if step.completed_at:
                step_rows.append(
                    TimelineRow(
                        at=step.completed_at,
                        kind="step",
                        title=f"{step.title} {step.state}",
                        detail=step.note,
                        actor=step.completed_by,
                    )
                )
        step_rows = [r for r in step_rows if _in_window(r.at, since, until)]
        step_rows.sort(key=lambda r: r.at, reverse=newest_first)
        rows.extend(step_rows[:limit] if limit is not None else step_rows)
    if kinds is None or "event" in kinds:
        events = _window(
            ParticipantEvent.objects.filter(
                participant_id=enrollment.participant_id, received_at__gte=enrollment.created_at
            ),
            "occurred_at",
            **window,
        )
        for event in events:
            rows.append(
                TimelineRow(
                    at=event.occurred_at,
                    kind="event",
                    title=event.event_type,
                    detail=f"{event.get_disposition_display()} (id {event.event_id})",
                    actor=event.source,
                )
            )
    return rows


enrollment_timeline.timeline_kinds = KINDS
