"""The step checklist: instantiating a stage's steps, due dates in the
program timezone, completing and skipping steps.

Rules: a step is open while pending or overdue; completed and skipped are
final. Completing an already completed step is a no-op (idempotent).
Closing an overdue step auto-resolves its `sla_breach` item (audited).
When the last required step of a stage closes, the enrollment advances
through the stage's `on_complete` transition (audited with the system actor).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import transaction
from django.utils import timezone

from participants.models import (
    OPEN_STEP_STATES,
    Enrollment,
    EventDisposition,
    ParticipantEvent,
    StepInstance,
    StepState,
)
from participants.services.common import emit, lock_enrollment, require_acting_role
from participants.step_kinds import step_kind_handler
from programs.actors import Actor, as_actor
from programs.errors import TransitionNotAllowed
from programs.services import audit_record, exception_resolve_for

_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
VIA_CHOICES = ("coordinator", "event", "message")


def compute_due_at(start: datetime, due_after: str, tz_name: str) -> datetime:
    """`start` plus the ISO 8601 duration `due_after`, counted in `tz_name`.

    Weeks and days are calendar days on the local wall clock (P1D from 10:00
    is 10:00 the next local day, 23 or 25 hours later across a DST change);
    hours, minutes and seconds are elapsed time. Returned in UTC.
    """
    match = _DURATION.match(due_after or "")
    if not match:
        raise ValueError(f"{due_after!r} is not an ISO 8601 duration such as P2D or PT4H")
    parts = {k: float(v) if v else 0 for k, v in match.groupdict().items()}
    tz = ZoneInfo(tz_name or "UTC")
    local = start.astimezone(tz)
    days = int(parts["weeks"]) * 7 + int(parts["days"])
    if days:
        wall = local.replace(tzinfo=None) + timedelta(days=days)
        # A wall time inside a spring-forward gap resolves like zoneinfo's
        # fold=0: it is read with the offset before the change.
        local = wall.replace(tzinfo=tz)
    elapsed = timedelta(hours=parts["hours"], minutes=parts["minutes"], seconds=parts["seconds"])
    return (local.astimezone(ZoneInfo("UTC")) + elapsed).astimezone(ZoneInfo("UTC"))


def _step_payload(step: StepInstance) -> dict:
    return {
        "step_id": step.pk,
        "step_key": step.step_key,
        "stage_key": step.stage_key,
        "kind": step.kind,
        "step_state": step.state,
        "due_at": step.due_at.isoformat() if step.due_at else None,
    }


def instantiate_stage_steps(enrollment: Enrollment, state: str, actor: Actor) -> list:
    """Create the steps of the stage for `state` that do not exist yet, run each
    kind's handler, then apply events that arrived early for them. The caller
    holds the enrollment lock. Returns the created steps."""
    version = enrollment.program_version
    stage = version.stage_for_state(state)
    if not stage:
        return []
    existing = set(enrollment.steps.values_list("step_key", flat=True))
    now = timezone.now()
    tz_name = enrollment.program.timezone
    created = []
    for definition in stage.get("steps", []):
        if definition["key"] in existing:
            continue
        due_after = definition.get("due_after")
        step = StepInstance.objects.create(
            enrollment=enrollment,
            stage_key=stage["key"],
            stage_state=state,
            step_key=definition["key"],
            title=definition["title"],
            kind=definition["kind"],
            required=definition.get("required", True),
            completes_on=definition.get("completes_on", ""),
            due_at=compute_due_at(now, due_after, tz_name) if due_after else None,
            severity=(definition.get("escalation") or {}).get("severity", "medium"),
            created_at=now,
        )
        step_kind_handler(step.kind)(
            step=step, enrollment=enrollment, definition=definition, actor=actor
        )
        created.append(step)
    if created:
        _apply_deferred_events(enrollment, created, actor)
    return created


def _apply_deferred_events(enrollment: Enrollment, steps: list, actor: Actor) -> None:
    """Partner events that arrived before their stage began complete the new
    steps now (out-of-order arrival is normal: a scale may sync before the
    enrollment reaches onboarding)."""
    wanted = {s.completes_on: s for s in steps if s.completes_on}
    if not wanted:
        return
    events = ParticipantEvent.objects.filter(
        participant_id=enrollment.participant_id,
        disposition=EventDisposition.DEFERRED,
        event_type__in=list(wanted),
    ).order_by("occurred_at", "id")
    for event in events:
        step = wanted.get(event.event_type)
        if step is None or step.state not in OPEN_STEP_STATES:
            continue
        close_step(
            step,
            state=StepState.COMPLETED,
            via="event",
            actor=actor,
            at=event.occurred_at,
            event=event,
            enrollment=enrollment,
        )
        event.matched = True
        event.disposition = EventDisposition.MATCHED
        event.applied_at = timezone.now()
        event.save(update_fields=["matched", "disposition", "applied_at"])


def close_step(
    step: StepInstance,
    *,
    state: str,
    via: str,
    actor: Actor,
    enrollment: Enrollment,
    at: datetime | None = None,
    reason: str = "",
    event: ParticipantEvent | None = None,
) -> StepInstance:
    """Move an open step to completed or skipped: save, audit, outbox event, and
    auto-resolve its sla_breach item if it was overdue. Caller holds the
    enrollment lock."""
    from_state = step.state
    step.state = state
    step.completed_at = at or timezone.now()
    step.completed_via = via
    step.completed_by = actor.label[:200]
    step.completed_by_event = event
    step.paused_remaining = None
    step.note = reason or step.note
    step.save(
        update_fields=[
            "state",
            "completed_at",
            "completed_via",
            "completed_by",
            "completed_by_event",
            "paused_remaining",
            "note",
        ]
    )
    verb = "completed" if state == StepState.COMPLETED else "skipped"
    audit_record(
        actor=actor,
        action=f"step.{verb}",
        target=step,
        organization=enrollment.organization_id,
        from_state=from_state,
        to_state=state,
        reason=reason,
        metadata={
            "enrollment_id": enrollment.pk,
            "step_key": step.step_key,
            "via": via,
            **({"event_id": event.event_id} if event else {}),
        },
    )
    emit(
        enrollment,
        f"participants.step.{verb}",
        {**_step_payload(step), "via": via, "late": from_state == StepState.OVERDUE},
        occurred_at=step.completed_at,
    )
    if from_state == StepState.OVERDUE:
        exception_resolve_for(
            organization=enrollment.organization_id,
            dedup_key=step.sla_dedup_key,
            actor=actor,
            note=f"step {step.step_key} {verb} late (via {via})",
        )
    return step


def close_open_steps_except(enrollment: Enrollment, keep_state: str, actor: Actor, why: str):
    """Skip every open step not belonging to `keep_state`'s stage: its stage is over."""
    steps = enrollment.steps.filter(state__in=OPEN_STEP_STATES).exclude(stage_state=keep_state)
    for step in steps.order_by("id"):
        close_step(
            step,
            state=StepState.SKIPPED,
            via="stage_left",
            actor=actor,
            enrollment=enrollment,
            reason=why,
        )


def stop_clocks(enrollment: Enrollment) -> None:
    """Pause: pending steps keep the time they had left; no due date meanwhile."""
    now = timezone.now()
    for step in enrollment.steps.filter(state=StepState.PENDING, due_at__isnull=False):
        step.paused_remaining = max(step.due_at - now, timedelta(0))
        step.due_at = None
        step.save(update_fields=["paused_remaining", "due_at"])


def restart_clocks(enrollment: Enrollment) -> None:
    now = timezone.now()
    for step in enrollment.steps.filter(state=StepState.PENDING, paused_remaining__isnull=False):
        step.due_at = now + step.paused_remaining
        step.paused_remaining = None
        step.save(update_fields=["paused_remaining", "due_at"])


def _lock_step(step_id) -> tuple[Enrollment, StepInstance]:
    enrollment_id = (
        StepInstance.objects.filter(pk=step_id).values_list("enrollment_id", flat=True).first()
    )
    if enrollment_id is None:
        raise StepInstance.DoesNotExist(f"no step with id {step_id}")
    enrollment = lock_enrollment(enrollment_id)
    step = StepInstance.objects.select_for_update(of=("self",)).get(pk=step_id)
    return enrollment, step


def _refuse(step: StepInstance, transition: str):
    allowed = ["complete", "skip"] if step.is_open else []
    raise TransitionNotAllowed(
        obj_label=f"step {step.step_key} of enrollment #{step.enrollment_id}",
        transition=transition,
        current_state=step.state,
        allowed=allowed,
    )


def step_complete(
    *, step_id: int, actor, via: str = "coordinator", reason: str = "", at=None
) -> StepInstance:
    """Complete an open step (pending or overdue) and advance the enrollment if
    that finished its stage.

    `via` says how: "coordinator" (a person ticked it; users need coordinator,
    lead or admin in the organization), "event" (a partner event) or
    "message" (its message was sent/delivered). Idempotent: a completed step
    is returned unchanged. A skipped step cannot be completed
    (TransitionNotAllowed). Emits participants.step.completed, audited as
    step.completed; a late completion auto-resolves the sla_breach item.
    """
    from participants.services.enrollments import maybe_auto_advance

    if via not in VIA_CHOICES:
        raise ValueError(f"via must be one of {', '.join(VIA_CHOICES)}, not {via!r}")
    actor = as_actor(actor)
    with transaction.atomic():
        enrollment, step = _lock_step(step_id)
        if step.state == StepState.COMPLETED:
            return step
        if not step.is_open:
            _refuse(step, "complete")
        require_acting_role(actor, enrollment.organization_id, "complete steps")
        close_step(
            step,
            state=StepState.COMPLETED,
            via=via,
            actor=actor,
            enrollment=enrollment,
            reason=reason,
            at=at,
        )
        maybe_auto_advance(enrollment)
    return step


def step_skip(*, step_id: int, actor, reason: str) -> StepInstance:
    """Skip an open step (a person decides it is not needed); reason required.

    A skipped step counts as done for its stage, so skipping the last open
    required step advances the enrollment. Emits participants.step.skipped,
    audited as step.skipped; closes an sla_breach item if it was overdue.
    """
    from participants.services.enrollments import maybe_auto_advance

    if not reason or not reason.strip():
        raise ValueError("a reason is required to skip a step")
    actor = as_actor(actor)
    with transaction.atomic():
        enrollment, step = _lock_step(step_id)
        if not step.is_open:
            _refuse(step, "skip")
        require_acting_role(actor, enrollment.organization_id, "skip steps")
        close_step(
            step,
            state=StepState.SKIPPED,
            via="coordinator",
            actor=actor,
            enrollment=enrollment,
            reason=reason.strip(),
        )
        maybe_auto_advance(enrollment)
    return step


_MESSAGE_PROGRESS = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}


def step_complete_for_message(
    *, step_id: int, status: str, actor=None, message_ref: str = ""
) -> StepInstance | None:
    """Messaging reports a message's progress for a `message` step.

    The step completes (via="message") once `status` reaches the step's
    `message.complete_on` ("sent" or "delivered", default "delivered").
    Earlier statuses, closed steps and non-message steps change nothing;
    repeats are harmless. Messaging calls this through the signal
    participants connects to (it cannot import participants).
    """
    if status not in _MESSAGE_PROGRESS:
        raise ValueError(f"unknown message status {status!r}")
    step = StepInstance.objects.select_related("enrollment__program_version").get(pk=step_id)
    if step.kind != "message" or not step.is_open:
        return step
    definition = step.enrollment.program_version.step_definition(step.step_key) or {}
    needed = (definition.get("message") or {}).get("complete_on", "delivered")
    if _MESSAGE_PROGRESS[status] < _MESSAGE_PROGRESS[needed]:
        return step
    return step_complete(
        step_id=step_id,
        actor=actor or Actor.system("messaging"),
        via="message",
        reason=f"message {status}" + (f" ({message_ref})" if message_ref else ""),
    )
