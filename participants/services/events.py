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
from django.db.models import Case, DateTimeField, Value, When
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

    One transaction. The participant's non-terminal enrollments are read and
    locked in one statement (ascending ids: a stable lock order), their steps
    in one more, and the event row is inserted once with its final
    disposition.
    """
    _validate(event_id, event_type, external_ref, occurred_at, data)
    actor = as_actor(actor)
    organization_id = getattr(organization, "pk", organization)
    with transaction.atomic():
        enrollments = _locked_enrollments(organization_id, [external_ref]).get(external_ref, [])
        participant = (
            enrollments[0].participant
            if enrollments
            else Participant.objects.filter(
                organization_id=organization_id, external_ref=external_ref
            ).first()
        )
        steps = _steps_by_enrollment(enrollments)
        plan = _plan(participant, enrollments, steps, event_type)
        event = _new_event(
            organization_id, event_id, event_type, external_ref, occurred_at, data, source, plan
        )
        try:
            with transaction.atomic():
                event.save(force_insert=True)
        except IntegrityError:
            original = ParticipantEvent.objects.get(
                organization_id=organization_id, event_id=event_id
            )
            return IngestResult(event=original, created=False)
        return _apply_plan(event, plan, actor, write_last_event=True)


@dataclass
class _Plan:
    """What one event does, decided from the locked enrollments and their steps."""

    participant: Participant | None
    enrollments: list
    matches: list  # (enrollment, [open steps it completes]) in enrollment order
    disposition: str


def _locked_enrollments(organization_id, refs) -> dict[str, list[Enrollment]]:
    """Non-terminal enrollments of the participants with these references, locked
    (select_for_update of the enrollment rows only, ascending ids), with
    participant, program and version joined. PostgreSQL re-checks the state
    of a row it waited for, so an enrollment that just became terminal is
    left out."""
    by_ref: dict[str, list[Enrollment]] = {}
    if not refs:
        return by_ref
    rows = (
        Enrollment.objects.select_for_update(of=("self",))
        .filter(
            participant__organization_id=organization_id,
            participant__external_ref__in=list(refs),
            state__in=NON_TERMINAL_STATES,
        )
        .select_related("participant", "program", "program_version")
        .order_by("pk")
    )
    for enrollment in rows:
        by_ref.setdefault(enrollment.participant.external_ref, []).append(enrollment)
    return by_ref


def _steps_by_enrollment(enrollments) -> dict[int, list[StepInstance]]:
    steps: dict[int, list[StepInstance]] = {e.pk: [] for e in enrollments}
    if enrollments:
        for step in StepInstance.objects.filter(enrollment_id__in=list(steps)):
            steps[step.enrollment_id].append(step)
    return steps


def _plan(participant, enrollments, steps_by_enrollment, event_type: str) -> _Plan:
    """Same decision as applying the event enrollment by enrollment: open steps
    expecting it are completed (matched); otherwise a step that already had it
    makes it redundant, a later stage expecting it makes it deferred."""
    if participant is None:
        return _Plan(None, [], [], EventDisposition.UNKNOWN_PARTICIPANT)
    matches, deferred, redundant = [], False, False
    for enrollment in enrollments:
        if enrollment.is_terminal:
            continue
        steps = steps_by_enrollment.get(enrollment.pk, [])
        open_steps = [
            s for s in steps if s.completes_on == event_type and s.state in OPEN_STEP_STATES
        ]
        if open_steps:
            matches.append((enrollment, open_steps))
        elif any(s.completes_on == event_type for s in steps):
            redundant = True
        elif _expected_later(enrollment, event_type, {s.step_key for s in steps}):
            deferred = True
    if matches:
        disposition = EventDisposition.MATCHED
    elif deferred:
        disposition = EventDisposition.DEFERRED
    elif redundant:
        disposition = EventDisposition.REDUNDANT
    else:
        disposition = EventDisposition.UNMATCHED
    live = [e for e in enrollments if not e.is_terminal]
    return _Plan(participant, live, matches, disposition)


def _new_event(
    organization_id, event_id, event_type, external_ref, occurred_at, data, source, plan
):
    now = timezone.now()
    matched = plan.disposition == EventDisposition.MATCHED
    return ParticipantEvent(
        organization_id=organization_id,
        event_id=event_id,
        event_type=event_type,
        external_ref=external_ref,
        participant=plan.participant,
        occurred_at=occurred_at,
        received_at=now,
        data=data or {},
        source=source[:100],
        matched=matched,
        disposition=plan.disposition,
        applied_at=now if matched else None,
    )


def _apply_plan(event: ParticipantEvent, plan: _Plan, actor, *, write_last_event: bool):
    """The stored event's effects: close matched steps (audit + outbox each),
    move `last_event_at`, auto-advance finished stages, or raise the
    unmatched exception item. Caller holds the enrollment locks."""
    from participants.services.enrollments import maybe_auto_advance

    matched_by_enrollment = {e.pk: steps for e, steps in plan.matches}
    matched = []
    for enrollment in plan.enrollments:
        steps = matched_by_enrollment.get(enrollment.pk, [])
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
            if write_last_event:
                Enrollment.objects.filter(pk=enrollment.pk).update(last_event_at=event.occurred_at)
        if steps:
            maybe_auto_advance(enrollment)
    if plan.disposition in (EventDisposition.UNMATCHED, EventDisposition.UNKNOWN_PARTICIPANT):
        return _unmatched(event, actor, plan.disposition)
    return IngestResult(event=event, created=True, matched_steps=matched)


def _expected_later(enrollment: Enrollment, event_type: str, existing: set) -> bool:
    for stage in enrollment.program_version.definition.get("stages", []):
        for step in stage.get("steps", []):
            if step.get("completes_on") == event_type and step["key"] not in existing:
                return True
    return False


def _unmatched(event: ParticipantEvent, actor, disposition: str) -> IngestResult:
    """The stored event (disposition already set) becomes an exception item."""
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


@dataclass
class EventItem:
    """One event of a batch (the arguments of `event_ingest`)."""

    event_id: str
    event_type: str
    external_ref: str
    occurred_at: datetime
    data: dict | None = None


def events_ingest_many(
    *, organization, items: list[EventItem], actor, source: str = ""
) -> list[IngestResult | ValueError]:
    """Ingest many events at once, set-based, with exactly the outcome of calling
    `event_ingest` for each item in order, in one transaction.

    Returns one entry per item: its IngestResult, or the ValueError that
    rejected it (nothing stored for that item). Duplicates by (organization,
    event_id), stored before or earlier in the same batch, return the stored
    original with created=False. Unmatched events raise one exception item per
    reference and type (repeats count occurrences); matched steps are
    completed with their audit and outbox rows, as in `event_ingest`.

    Reads: stored duplicates, the locked enrollments of every reference, the
    participants without one and the steps: one query each. Events that do
    not complete a step are inserted together (one INSERT); an event that
    completes a step flushes the pending ones first, so an auto-advance that
    applies deferred events sees them. A database error (say a concurrent
    request storing the same event id) rolls the whole call back and raises;
    the caller may retry item by item.
    """
    actor = as_actor(actor)
    organization_id = getattr(organization, "pk", organization)
    results: list = [None] * len(items)
    valid: list[int] = []
    for index, item in enumerate(items):
        try:
            _validate(
                item.event_id, item.event_type, item.external_ref, item.occurred_at, item.data
            )
        except ValueError as exc:
            results[index] = exc
            continue
        valid.append(index)
    if not valid:
        return results
    with transaction.atomic():
        stored = {
            e.event_id: e
            for e in ParticipantEvent.objects.filter(
                organization_id=organization_id, event_id__in={items[i].event_id for i in valid}
            )
        }
        refs = {items[i].external_ref for i in valid if items[i].event_id not in stored}
        enrollments_by_ref = _locked_enrollments(organization_id, refs)
        participants = {ref: rows[0].participant for ref, rows in enrollments_by_ref.items()}
        missing = refs - set(participants)
        if missing:
            for participant in Participant.objects.filter(
                organization_id=organization_id, external_ref__in=missing
            ):
                participants[participant.external_ref] = participant
        steps = _steps_by_enrollment([e for rows in enrollments_by_ref.values() for e in rows])
        first_of: dict[str, int] = {}
        pending: list[ParticipantEvent] = []
        unmatched: list[tuple[int, ParticipantEvent, str]] = []
        touched: dict[int, Enrollment] = {}
        duplicates: list[tuple[int, int]] = []
        for index in valid:
            item = items[index]
            if item.event_id in stored:
                results[index] = IngestResult(event=stored[item.event_id], created=False)
                continue
            if item.event_id in first_of:
                duplicates.append((index, first_of[item.event_id]))
                continue
            first_of[item.event_id] = index
            enrollments = enrollments_by_ref.get(item.external_ref, [])
            plan = _plan(participants.get(item.external_ref), enrollments, steps, item.event_type)
            event = _new_event(
                organization_id,
                item.event_id,
                item.event_type,
                item.external_ref,
                item.occurred_at,
                item.data,
                source,
                plan,
            )
            if plan.matches:
                _flush(pending)
                event.save(force_insert=True)
                results[index] = _apply_plan(event, plan, actor, write_last_event=True)
                # an auto-advance may have closed or created steps of these enrollments
                steps.update(_steps_by_enrollment(plan.enrollments))
                continue
            pending.append(event)
            before = {e.pk: e.last_event_at for e in plan.enrollments}
            _apply_plan(
                event,
                _Plan(plan.participant, plan.enrollments, [], ""),
                actor,
                write_last_event=False,
            )
            for enrollment in plan.enrollments:
                if enrollment.last_event_at != before[enrollment.pk]:
                    touched[enrollment.pk] = enrollment
            if plan.disposition in (
                EventDisposition.UNMATCHED,
                EventDisposition.UNKNOWN_PARTICIPANT,
            ):
                unmatched.append((index, event, plan.disposition))
            else:
                results[index] = IngestResult(event=event, created=True)
        _flush(pending)
        if touched:
            Enrollment.objects.filter(pk__in=list(touched)).update(
                last_event_at=Case(
                    *[When(pk=pk, then=Value(e.last_event_at)) for pk, e in touched.items()],
                    output_field=DateTimeField(),
                )
            )
        for index, event, disposition in unmatched:
            results[index] = _unmatched(event, actor, disposition)
        for index, first in duplicates:
            results[index] = IngestResult(event=results[first].event, created=False)
    return results


def _flush(pending: list[ParticipantEvent]) -> None:
    """Insert the pending events in one statement (pks are set on the objects)."""
    if pending:
        ParticipantEvent.objects.bulk_create(pending)
        pending.clear()
