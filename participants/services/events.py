"""Partner events: store every one, apply it to the steps that expect it.

`event_ingest` is the engine behind the partner API's event endpoint; it
takes no request objects. Every event is stored (nothing is dropped) with a
disposition:

- matched: it completed one or more open steps (`completes_on` equals its
  type) of the participant's non-terminal enrollments;
- deferred: a later stage of such an enrollment expects it; it completes
  that step when the stage is entered (events may arrive before the state);
- redundant: the steps it completes are already done (e.g. a repeat);
- unmatched / unknown_participant: nothing expects it, or no participant
  has the reference → an `unmatched_event` exception-queue item (one per
  reference and type; repeats count occurrences) and the outbox event
  participants.event.unmatched.

Order does not matter: a step completed by an event records the event's
occurred_at, and an event older than the last one applied is still applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from integrations.outbox import outbox_write
from participants.models import (
    NON_TERMINAL_STATES,
    OPEN_STEP_STATES,
    Enrollment,
    EventDisposition,
    Participant,
    ParticipantEvent,
    StepInstance,
    StepState,
)
from participants.services.common import lock_enrollment
from participants.services.steps import close_step
from programs.actors import as_actor
from programs.models import OpsException
from programs.services import exception_raise


@dataclass
class IngestResult:
    event: ParticipantEvent
    created: bool
    matched_steps: list = field(default_factory=list)
    exception: OpsException | None = None


def _validate(event_id, event_type, external_ref, occurred_at, data):
    if not isinstance(event_id, str) or not event_id.strip() or len(event_id) > 200:
        raise ValueError("event_id: a non-empty id of at most 200 characters is required")
    if not isinstance(event_type, str) or not event_type.strip() or len(event_type) > 100:
        raise ValueError("event_type: a non-empty type of at most 100 characters is required")
    if not isinstance(external_ref, str) or not external_ref.strip() or len(external_ref) > 200:
        raise ValueError("external_ref: a non-empty reference of at most 200 characters")
    if not isinstance(occurred_at, datetime):
        raise ValueError("occurred_at: a datetime is required")
    if timezone.is_naive(occurred_at):
        raise ValueError("occurred_at: must carry a timezone offset")
    if data is not None and not isinstance(data, dict):
        raise ValueError("data: an object is required")


def event_ingest(
    *,
    organization,
    event_id: str,
    event_type: str,
    external_ref: str,
    occurred_at: datetime,
    data: dict | None,
    actor,
    source: str = "",
) -> IngestResult:
    """Store a partner event and apply it (see the module docstring).

    Idempotent per (organization, event_id): a duplicate returns the stored
    original with created=False and causes nothing else, also when duplicates
    race (the unique constraint decides; the loser reads the winner's row).
    Emits participants.step.completed per matched step (and enrollment events
    if a stage completes), or participants.event.unmatched.
    """
    _validate(event_id, event_type, external_ref, occurred_at, data)
    actor = as_actor(actor)
    organization_id = getattr(organization, "pk", organization)
    with transaction.atomic():
        try:
            with transaction.atomic():
                event = ParticipantEvent.objects.create(
                    organization_id=organization_id,
                    event_id=event_id,
                    event_type=event_type,
                    external_ref=external_ref,
                    occurred_at=occurred_at,
                    received_at=timezone.now(),
                    data=data or {},
                    source=source[:100],
                )
        except IntegrityError:
            original = ParticipantEvent.objects.get(
                organization_id=organization_id, event_id=event_id
            )
            return IngestResult(event=original, created=False)
        return _apply(event, actor)


def _apply(event: ParticipantEvent, actor) -> IngestResult:
    participant = Participant.objects.filter(
        organization_id=event.organization_id, external_ref=event.external_ref
    ).first()
    if participant is None:
        return _unmatched(event, actor, EventDisposition.UNKNOWN_PARTICIPANT)
    event.participant = participant
    enrollment_ids = list(
        Enrollment.objects.filter(participant=participant, state__in=NON_TERMINAL_STATES)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    matched, deferred, redundant = [], False, False
    from participants.services.enrollments import maybe_auto_advance

    for enrollment_id in enrollment_ids:  # ascending ids: a stable lock order
        enrollment = lock_enrollment(enrollment_id)
        if enrollment.is_terminal:
            continue
        steps = list(
            enrollment.steps.filter(completes_on=event.event_type, state__in=OPEN_STEP_STATES)
        )
        for step in steps:
            close_step(
                step,
                state=StepState.COMPLETED,
                via="event",
                actor=actor,
                at=event.occurred_at,
                event=event,
                enrollment=enrollment,
            )
            matched.append(step)
        if enrollment.last_event_at is None or event.occurred_at > enrollment.last_event_at:
            enrollment.last_event_at = event.occurred_at
            Enrollment.objects.filter(pk=enrollment.pk).update(last_event_at=event.occurred_at)
        if steps:
            maybe_auto_advance(enrollment)
            continue
        if StepInstance.objects.filter(
            enrollment=enrollment, completes_on=event.event_type
        ).exists():
            redundant = True
        elif _expected_later(enrollment, event.event_type):
            deferred = True
    if matched:
        event.matched = True
        event.disposition = EventDisposition.MATCHED
        event.applied_at = timezone.now()
    elif deferred:
        event.disposition = EventDisposition.DEFERRED
    elif redundant:
        event.disposition = EventDisposition.REDUNDANT
    else:
        return _unmatched(event, actor, EventDisposition.UNMATCHED)
    event.save(update_fields=["participant", "matched", "disposition", "applied_at"])
    return IngestResult(event=event, created=True, matched_steps=matched)


def _expected_later(enrollment: Enrollment, event_type: str) -> bool:
    existing = set(enrollment.steps.values_list("step_key", flat=True))
    for stage in enrollment.program_version.definition.get("stages", []):
        for step in stage.get("steps", []):
            if step.get("completes_on") == event_type and step["key"] not in existing:
                return True
    return False


def _unmatched(event: ParticipantEvent, actor, disposition: str) -> IngestResult:
    event.disposition = disposition
    event.save(update_fields=["participant", "disposition"])
    why = (
        "no participant has this reference"
        if disposition == EventDisposition.UNKNOWN_PARTICIPANT
        else "no step of the participant's enrollments expects it"
    )
    item, _created = exception_raise(
        organization=event.organization_id,
        kind="unmatched_event",
        title=f"Unmatched partner event {event.event_type} for {event.external_ref}"[:300],
        detail=f"Event {event.event_id} from {event.source or 'unknown source'}: {why}.",
        dedup_key=f"unmatched_event:{event.external_ref}:{event.event_type}",
        subject=event,
        actor=actor,
        context={
            "event_id": event.event_id,
            "event_type": event.event_type,
            "participant_ref": event.external_ref,
            "disposition": disposition,
        },
    )
    outbox_write(
        organization=event.organization_id,
        event_type_name="participants.event.unmatched",
        payload={
            "event_id": event.event_id,
            "event_type": event.event_type,
            "participant_ref": event.external_ref,
            "disposition": disposition,
            "exception_id": item.pk,
            "occurred_at": event.occurred_at.isoformat(),
        },
    )
    return IngestResult(event=event, created=True, exception=item)
