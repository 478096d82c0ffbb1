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
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from config.request_id import get_request_id
from integrations.outbox import outbox_write, outbox_write_many
from integrations.payloads import require_storable
from participants.models import (
    OPEN_STEP_STATES,
    Enrollment,
    EventDisposition,
    Participant,
    ParticipantEvent,
    StepInstance,
    StepState,
)
from participants.services import ingest_rows
from participants.services.steps import close_step
from programs.actors import as_actor
from programs.models import OpsException
from programs.registries import RetryOutcome
from programs.services import exception_raise, exception_resolve_for


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
    ahead = occurred_at - timezone.now()
    if ahead > settings.BATON_EVENT_MAX_FUTURE:
        hours = settings.BATON_EVENT_MAX_FUTURE / timedelta(hours=1)
        raise ValueError(
            f"occurred_at: lies {ahead.days} days and {ahead.seconds // 3600} hours after "
            f"Baton's clock; at most {hours:g} hours ahead is accepted (check the sending "
            "system's clock)"
        )
    if data is not None and not isinstance(data, dict):
        raise ValueError("data: an object is required")
    require_storable(event_id, "$.event_id")
    require_storable(event_type, "$.event_type")
    require_storable(external_ref, "$.external_ref")
    require_storable(data, "$.data")


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
    program_ids=None,
) -> IngestResult:
    """Store a partner event and apply it (see the module docstring).

    `program_ids` (a scoped API key's programs) limits the enrollments the
    event may touch to those programs; None means every program.

    Idempotent per (organization, event_id): a duplicate returns the stored
    original with created=False and causes nothing else, also when duplicates
    race (the unique constraint decides; the loser reads the winner's row).
    Emits participants.step.completed per matched step (and enrollment events
    if a stage completes), or participants.event.unmatched.

    One transaction (joining the caller's without a savepoint: an error rolls
    the caller back too). The participant's non-terminal enrollments are read
    and locked together with their steps in one statement (ascending ids: a
    stable lock order), and the event row is inserted once with its final
    disposition (`INSERT ... ON CONFLICT DO NOTHING`: a duplicate costs no
    savepoint).
    """
    _validate(event_id, event_type, external_ref, occurred_at, data)
    actor = as_actor(actor)
    organization_id = getattr(organization, "pk", organization)
    with transaction.atomic(savepoint=False):
        enrollments, steps = _locked_enrollments_and_steps(
            organization_id, external_ref, program_ids
        )
        participant = (
            enrollments[0].participant
            if enrollments
            else Participant.objects.filter(
                organization_id=organization_id, external_ref=external_ref
            ).first()
        )
        plan = _plan(participant, enrollments, steps, event_type)
        event = _new_event(
            organization_id, event_id, event_type, external_ref, occurred_at, data, source, plan
        )
        if not ingest_rows.insert_new_events([event]):
            original = ParticipantEvent.objects.get(
                organization_id=organization_id, event_id=event_id
            )
            return IngestResult(event=original, created=False)
        if plan.matches and _needs_event_path(plan, steps):
            return _apply_plan(event, plan, actor, write_last_event=True)
        # the batch writer: the same rows as close_step, fewer statements
        batch = _Batch(actor)
        batch.add(0, event, plan, stored=True)
        batch.flush()
        if batch.unmatched:
            return _unmatched(event, actor, plan.disposition)
        return batch.results[0]


@dataclass
class _Plan:
    """What one event does, decided from the locked enrollments and their steps."""

    participant: Participant | None
    enrollments: list
    matches: list  # (enrollment, [open steps it completes]) in enrollment order
    disposition: str


def _locked_enrollments_and_steps(organization_id, ref: str, program_ids=None):
    """The non-terminal enrollments of one reference, locked, then their steps.

    Two statements, not one with the steps joined: a statement that waits for
    a row lock gets the newest version of the locked row but keeps the rows
    it joined from the snapshot it started with (PostgreSQL, READ
    COMMITTED), so steps read with the lock would miss what the transaction
    it waited for changed. The second statement's snapshot is taken after the
    lock is granted."""
    enrollments = ingest_rows.read_enrollments(organization_id, [ref], program_ids).get(ref, [])
    return enrollments, ingest_rows.steps_by_enrollment(enrollments)


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
    *, organization, items: list[EventItem], actor, source: str = "", program_ids=None
) -> list[IngestResult | ValueError]:
    """Ingest many events at once, set-based, with exactly the outcome of calling
    `event_ingest` for each item in order, in one transaction.

    Returns one entry per item: its IngestResult, or the ValueError that
    rejected it (nothing stored for that item). Duplicates by (organization,
    event_id), stored before or earlier in the same batch, return the stored
    original with created=False. Unmatched events raise one exception item per
    reference and type (repeats count occurrences); matched steps are
    completed with their audit and outbox rows (participants.step.completed),
    as in `event_ingest`. `program_ids` limits the enrollments touched, as
    there.

    Locks are taken late: the enrollments, their steps and the plan of every
    event are read and made without locks; the new events are inserted (an
    INSERT of new rows waits for no lock of ours), and only then are the
    enrollments locked (ascending ids) and what the plan read checked again
    (`ingest_rows.lock_and_read_marks`: each enrollment's state and version,
    each step's state, and the set of enrollments and steps; and whether
    another request stored one of the event ids meanwhile). If anything
    changed, nothing but the events has been written, and the whole batch is
    planned again with the locks held (`_ingest_planned(lock_first=True)`;
    when only steps changed, on the enrollments already read and now locked:
    the steps and the stored events are read again, not the enrollments); an
    event row the new plan decides otherwise (disposition, matched,
    participant) is corrected in one UPDATE. Each enrollment's event sequence
    and last event time are taken as they are under the lock, not compared:
    every concurrent event moves them, and no decision of the plan rests on
    them (the outbox sequence numbers are assigned when writing, after the
    lock; the last event time only moves forward). Concurrent batches for
    the same participants wait on one another only for their step, audit,
    outbox and enrollment writes, not for their planning or their events
    (docs/performance.md, "Partner event ingest").

    Statements: the enrollments of every reference, the stored duplicates,
    the participants without an enrollment and the steps (one query each);
    one INSERT of the events; the locks and the check (two); then one UPDATE
    of the completed steps, one INSERT of their audit rows, one of their
    outbox rows, and one UPDATE of the enrollments (sequence and last event
    time). Only an event whose completion may advance a stage (or closes an
    overdue step) takes the per-event path, after flushing what came before
    it. A database error rolls the whole call back and raises; the caller may
    retry item by item.
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
    args = (organization_id, [items[i] for i in valid], actor, source, program_ids)
    with transaction.atomic():
        outcomes = _ingest_planned(*args, lock_first=False)
        if isinstance(outcomes, _Changed):  # between planning and locking; locks held
            outcomes = _ingest_planned(
                *args,
                lock_first=True,
                enrollments=outcomes.enrollments,
                inserted=outcomes.inserted,
            )
    for index, outcome in zip(valid, outcomes, strict=True):
        results[index] = outcome
    return results


@dataclass(frozen=True)
class _Changed:
    """What `_ingest_planned` returns when the rows its plan read changed
    before it locked them (nothing written but the events; the locks held):
    the enrollments as read, to plan on again, when only their steps changed
    (their state, version and membership did not, and their counters are now
    as locked), or None when the enrollments must be read again; and the
    events it inserted before locking, whose rows the next plan corrects."""

    enrollments: dict[str, list[Enrollment]] | None
    inserted: dict[str, ParticipantEvent]  # by event id: inserted before the locks


def _ingest_planned(
    organization_id,
    items,
    actor,
    source,
    program_ids,
    *,
    lock_first,
    enrollments=None,
    inserted=None,
):
    """events_ingest_many's work for valid items: a result per item, or
    `_Changed` when `lock_first` is False and the rows the plan read changed
    before the locks were taken (nothing written but the events, which need
    no lock: their rows are corrected by the next plan). `enrollments`: reuse
    these (read, then locked, by a previous call in this transaction)
    instead of reading them again; `inserted`: the events that call stored,
    by event id."""
    inserted = inserted or {}
    results: list = [None] * len(items)
    refs = {item.external_ref for item in items}
    if enrollments is None:
        enrollments_by_ref = ingest_rows.read_enrollments(
            organization_id, refs, program_ids, lock=lock_first
        )
    else:
        enrollments_by_ref = enrollments
    enrollments = [e for rows in enrollments_by_ref.values() for e in rows]
    # stored by others: this transaction's own rows are planned again, not answered
    stored = ingest_rows.stored_events(
        organization_id, {item.event_id for item in items} - set(inserted)
    )
    participants = {ref: rows[0].participant for ref, rows in enrollments_by_ref.items()}
    missing = {item.external_ref for item in items if item.event_id not in stored}
    missing -= set(participants)
    if missing:
        for participant in Participant.objects.filter(
            organization_id=organization_id, external_ref__in=missing
        ):
            participants[participant.external_ref] = participant
    steps = ingest_rows.steps_by_enrollment(enrollments)
    # what the plan depends on, as read (the plan changes these objects)
    read_marks = None if lock_first else ingest_rows.marks(enrollments, steps)
    changed = None

    def locked_and_unchanged() -> bool:
        """Take the locks (once); False if what the plan read has changed.

        The enrollments' event sequence and last event time are not part of
        the plan: concurrent events move them all the time, and the writes
        only build on them. They are taken as they are under the lock."""
        nonlocal read_marks, changed
        if read_marks is None:
            return True
        # before the locks: an INSERT of new rows waits for no one
        none_stored_meanwhile = batch.insert_events(strict=False)
        locked = ingest_rows.lock_and_read_marks(organization_id, refs, program_ids)
        planned_on, read_marks = read_marks, None
        if locked is None:  # SQLite: one snapshot; only the events can tell
            if none_stored_meanwhile:
                return True
            changed = _Changed(None, batch.inserted)
            return False
        unchanged = none_stored_meanwhile and locked.marks == planned_on
        same_enrollments = locked.marks[0] == planned_on[0]
        if same_enrollments:
            for enrollment in enrollments:
                sequence, last_event_at = locked.counters[enrollment.pk]
                enrollment.event_sequence = sequence
                # planning again starts from the locked time; else the later one counts
                if not unchanged or _later(last_event_at, enrollment.last_event_at):
                    enrollment.last_event_at = last_event_at
        if unchanged:
            return True
        changed = _Changed(enrollments_by_ref if same_enrollments else None, batch.inserted)
        return False

    batch = _Batch(actor)
    first_of: dict[str, int] = {}
    duplicates: list[tuple[int, int]] = []
    corrected: list[ParticipantEvent] = []  # inserted before, planned differently now
    for index, item in enumerate(items):
        if item.event_id in stored:
            results[index] = IngestResult(event=stored[item.event_id], created=False)
            continue
        if item.event_id in first_of:
            duplicates.append((index, first_of[item.event_id]))
            continue
        first_of[item.event_id] = index
        rows = enrollments_by_ref.get(item.external_ref, [])
        plan = _plan(participants.get(item.external_ref), rows, steps, item.event_type)
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
        earlier = inserted.get(item.event_id)
        if earlier is not None:
            _becomes_row_of(event, earlier, corrected)
        if plan.matches and _needs_event_path(plan, steps):
            if not locked_and_unchanged():
                return changed
            batch.flush()
            if earlier is None and not ingest_rows.insert_new_events([event]):
                raise IntegrityError(f"event {event.event_id} was stored concurrently")
            results[index] = _apply_plan(event, plan, actor, write_last_event=True)
            # an auto-advance may have closed or created steps of these enrollments
            steps.update(ingest_rows.steps_by_enrollment(plan.enrollments))
            continue
        batch.add(index, event, plan, stored=earlier is not None)
    if not locked_and_unchanged():
        return changed
    batch.flush()
    if corrected:
        ingest_rows.update_rows(ParticipantEvent, corrected, _PLANNED_EVENT_FIELDS)
    for index, event, disposition in batch.unmatched:
        results[index] = _unmatched(event, actor, disposition)
    for index, result in batch.results.items():
        results[index] = result
    for index, first in duplicates:
        results[index] = IngestResult(event=results[first].event, created=False)
    return results


# what a plan decides of an event row; the rest is the event as sent
_PLANNED_EVENT_FIELDS = ["participant", "matched", "disposition", "applied_at"]


def _becomes_row_of(event: ParticipantEvent, earlier: ParticipantEvent, corrected: list) -> None:
    """`event`, planned again, is the row `earlier` already inserted: take its
    id and receipt time, and queue the row for correction if the plan now
    decides otherwise."""
    event.pk, event.received_at = earlier.pk, earlier.received_at
    if any(
        getattr(event, name) != getattr(earlier, name)
        for name in ("participant_id", "matched", "disposition")
    ):
        corrected.append(event)


def _later(when: datetime | None, than: datetime | None) -> bool:
    return when is not None and (than is None or when > than)


def _needs_event_path(plan: _Plan, steps_by_enrollment) -> bool:
    """True when completing the plan's steps may do more than close them: an
    overdue step (its SLA item resolves) or a stage that may auto-advance."""
    for enrollment, closing in plan.matches:
        if any(step.state == StepState.OVERDUE for step in closing):
            return True
        stage = enrollment.program_version.stage_for_state(enrollment.state)
        if stage and stage.get("on_complete"):
            closing_ids = {step.pk for step in closing}
            still_open = [
                step
                for step in steps_by_enrollment.get(enrollment.pk, [])
                if step.stage_state == enrollment.state
                and step.required
                and step.state in OPEN_STEP_STATES
                and step.pk not in closing_ids
            ]
            if not still_open:
                return True
    return False


_CLOSE_FIELDS = [
    "state",
    "completed_at",
    "completed_via",
    "completed_by",
    "completed_by_event",
    "paused_remaining",
]


class _Batch:
    """Events and step completions planned but not yet written, flushed with a
    few set-based statements (what `close_step` does one by one: step row,
    audit row, outbox event with the enrollment's next sequence number)."""

    def __init__(self, actor):
        self.actor = actor
        self.events: list[ParticipantEvent] = []
        self.closes: list[tuple[ParticipantEvent, Enrollment, StepInstance, str]] = []
        self.touched: dict[int, Enrollment] = {}
        self.results: dict[int, IngestResult] = {}
        self.unmatched: list[tuple[int, ParticipantEvent, str]] = []
        self.pending_results: list[tuple[int, ParticipantEvent, list]] = []
        self.inserted: dict[str, ParticipantEvent] = {}

    def add(self, index: int, event: ParticipantEvent, plan: _Plan, *, stored=False) -> None:
        if not stored:
            self.events.append(event)
        matched = []
        for enrollment, closing in plan.matches:
            for step in closing:
                # closed in memory now, so later events of the batch see it done
                from_state = step.state
                step.state = StepState.COMPLETED
                step.completed_at = event.occurred_at
                step.completed_via = "event"
                step.completed_by = self.actor.label[:200]
                step.paused_remaining = None
                self.closes.append((event, enrollment, step, from_state))
                matched.append(step)
            self.touched[enrollment.pk] = enrollment
        for enrollment in plan.enrollments:
            if enrollment.last_event_at is None or event.occurred_at > enrollment.last_event_at:
                enrollment.last_event_at = event.occurred_at
                self.touched[enrollment.pk] = enrollment
        if plan.disposition in (EventDisposition.UNMATCHED, EventDisposition.UNKNOWN_PARTICIPANT):
            self.unmatched.append((index, event, plan.disposition))
        else:
            self.pending_results.append((index, event, matched))

    def flush(self) -> None:
        if not (self.events or self.touched or self.pending_results):
            return
        self.insert_events()
        if self.closes:
            self._write_closes()
        if self.touched:
            ingest_rows.update_rows(
                Enrollment, list(self.touched.values()), ["event_sequence", "last_event_at"]
            )
        for index, event, matched in self.pending_results:
            self.results[index] = IngestResult(event=event, created=True, matched_steps=matched)
        self.events, self.closes, self.pending_results = [], [], []
        self.touched = {}

    def insert_events(self, *, strict: bool = True) -> bool:
        """INSERT the events added so far (their other writes wait for flush).

        An event another transaction stored meanwhile raises IntegrityError,
        or, not `strict`, makes this return False (the rest are inserted)."""
        if not self.events:
            return True
        inserted = ingest_rows.insert_new_events(self.events)
        complete = len(inserted) == len(self.events)
        if not complete and strict:
            raise IntegrityError("events of this batch were stored concurrently")
        self.inserted.update((e.event_id, e) for e in self.events if e.event_id in inserted)
        self.events = []
        return complete

    def _write_closes(self) -> None:
        from participants.services.common import enrollment_payload
        from participants.services.steps import _step_payload
        from programs.models import AuditEvent

        request_id = get_request_id()
        now = timezone.now()
        steps, audits, outbox = [], [], []
        for event, enrollment, step, from_state in self.closes:
            step.completed_by_event = event
            steps.append(step)
            audits.append(
                # the row programs.services.audit_record writes, built in bulk
                AuditEvent(
                    created_at=now,
                    organization_id=enrollment.organization_id,
                    actor_kind=self.actor.kind,
                    actor_id=self.actor.id,
                    actor_label=self.actor.label[:200],
                    action="step.completed",
                    object_type="participants.stepinstance",
                    object_id=str(step.pk),
                    from_state=from_state,
                    to_state=StepState.COMPLETED,
                    reason="",
                    request_id=request_id,
                    metadata={
                        "enrollment_id": enrollment.pk,
                        "step_key": step.step_key,
                        "via": "event",
                        "event_id": event.event_id,
                    },
                )
            )
            enrollment.event_sequence += 1
            outbox.append(
                {
                    "organization": enrollment.organization_id,
                    "event_type_name": "participants.step.completed",
                    "payload": {
                        **enrollment_payload(enrollment),
                        **_step_payload(step),
                        "via": "event",
                        "late": from_state == StepState.OVERDUE,
                    },
                    "sequence_key": enrollment.sequence_key,
                    "sequence": enrollment.event_sequence,
                    "occurred_at": step.completed_at,
                }
            )
        ingest_rows.update_rows(StepInstance, steps, _CLOSE_FIELDS)
        AuditEvent.objects.bulk_create(audits, batch_size=1000)
        outbox_write_many(outbox)


# --- recovery: apply stored unmatched events again --------------------------------------

STILL_UNMATCHED = (EventDisposition.UNMATCHED, EventDisposition.UNKNOWN_PARTICIPANT)


def events_reapply(*, organization, external_ref: str, event_type: str, actor) -> dict:
    """Apply again the stored events of (`external_ref`, `event_type`) that
    matched nothing (`unmatched` / `unknown_participant`), oldest first,
    against the participant's enrollments as they are now: typically after
    the participant was referred late, or entered the stage that expects the
    event. Each event that now applies gets its new disposition and its
    effects (steps completed with the event's `occurred_at`, audit, outbox,
    auto-advance), exactly as if it had arrived now; the others stay as they
    were. When none is left unmatched, the `unmatched_event` item resolves
    itself. Returns {"applied": n, "still_unmatched": m}.
    """
    actor = as_actor(actor)
    organization_id = getattr(organization, "pk", organization)
    with transaction.atomic():
        enrollments, steps = _locked_enrollments_and_steps(organization_id, external_ref)
        participant = (
            enrollments[0].participant
            if enrollments
            else Participant.objects.filter(
                organization_id=organization_id, external_ref=external_ref
            ).first()
        )
        pending = list(
            ParticipantEvent.objects.select_for_update()
            .filter(
                organization_id=organization_id,
                external_ref=external_ref,
                event_type=event_type,
                disposition__in=STILL_UNMATCHED,
            )
            .order_by("occurred_at", "pk")
        )
        applied = 0
        for event in pending:
            plan = _plan(participant, enrollments, steps, event_type)
            if plan.disposition in STILL_UNMATCHED:
                continue
            matched = plan.disposition == EventDisposition.MATCHED
            event.participant = participant
            event.disposition = plan.disposition
            event.matched = matched
            event.applied_at = timezone.now() if matched else None
            event.save(update_fields=["participant", "disposition", "matched", "applied_at"])
            _apply_plan(event, plan, actor, write_last_event=True)
            applied += 1
            # steps closed or a stage entered: the next event sees them as they are now
            enrollments, steps = _locked_enrollments_and_steps(organization_id, external_ref)
        still = len(pending) - applied
        if pending and not still:
            exception_resolve_for(
                organization=organization_id,
                dedup_key=f"unmatched_event:{external_ref}:{event_type}",
                actor=actor,
                note=f"{applied} stored event(s) applied on replay",
            )
    return {"applied": applied, "still_unmatched": still}


def retry_unmatched_event(exception, actor) -> str:
    """Retry action of `unmatched_event` items: `events_reapply` for the
    item's reference and event type."""
    context = exception.context or {}
    result = events_reapply(
        organization=exception.organization_id,
        external_ref=context["participant_ref"],
        event_type=context["event_type"],
        actor=actor,
    )
    if result["still_unmatched"]:
        return RetryOutcome(
            f"{result['applied']} event(s) applied; {result['still_unmatched']} still match "
            "nothing (is the participant referred, and in the stage that expects it?)",
            changed=result["applied"] > 0,
        )
    return RetryOutcome(f"{result['applied']} event(s) applied; the item resolved itself")
