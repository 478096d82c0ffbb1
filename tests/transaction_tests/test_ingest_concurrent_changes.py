"""Event ingestion never plans on rows another transaction has changed.

Batch ingest plans without locks, inserts its events and then locks
(participants.services.events.events_ingest_many): a change committed by
another connection between the planning and the locks is noticed, and the
batch plans again under the locks. A single event that waits for an
enrollment's lock reads the steps after the lock is granted, so it sees
what the lock holder committed."""

import threading
import time
from datetime import UTC, datetime

import pytest
from django.db import connection, transaction

from integrations import event_types
from integrations.models import OutboxEvent
from integrations.tests.api_fixtures import PartnerHttp, make_key
from participants.models import (
    Enrollment,
    EventDisposition,
    ParticipantEvent,
    StepInstance,
    StepState,
)
from participants.services import (
    enrollment_open,
    enrollment_transition,
    event_ingest,
    events_ingest_many,
    ingest_rows,
    participant_upsert,
    step_complete,
)
from participants.services.common import emit
from participants.services.events import EventItem
from programs.actors import Actor

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SYSTEM = Actor.system("test")
PARTNER = Actor(kind=Actor.API_CLIENT, id="1", label="api:ehr")
OCCURRED = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def _enrolled(org, program, ref):
    participant, _ = participant_upsert(organization=org, external_ref=ref, actor=SYSTEM)
    return enrollment_open(participant=participant, program=program, actor=SYSTEM)[0]


def _single_event(org, event_id, event_type, ref, occurred_at=OCCURRED):
    return event_ingest(
        organization=org.pk,
        event_id=event_id,
        event_type=event_type,
        external_ref=ref,
        occurred_at=occurred_at,
        data={},
        actor=PARTNER,
    )


def _in_another_connection(change):
    """Run `change` in its own thread (its own connection) and wait for its commit."""
    failures = []

    def run():
        try:
            change()
        except Exception as exc:  # reported in the test thread
            failures.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert not failures, failures


@pytest.fixture
def before_locks(monkeypatch):
    """Run a change (once) in another connection after the batch has planned,
    before its first write (the events, inserted just before the locks)."""
    changes = []

    def run_changes():
        while changes:
            _in_another_connection(changes.pop())

    for name in ("insert_new_events", "lock_and_read_marks"):
        real = getattr(ingest_rows, name)

        def after_changes(*args, real=real, **kwargs):
            run_changes()
            return real(*args, **kwargs)

        monkeypatch.setattr(ingest_rows, name, after_changes)
    return changes.append


def test_a_step_completed_meanwhile_is_not_completed_again(org, program, before_locks):
    # given an open eligibility step, and a batch planned to complete it
    enrollment = _enrolled(org, program, "L-1")
    _enrolled(org, program, "L-2")
    step = StepInstance.objects.get(enrollment=enrollment, step_key="eligibility_review")
    before_locks(lambda: step_complete(step_id=step.pk, actor=SYSTEM, via="coordinator"))
    items = [
        EventItem("late-1", "eligibility.screened", "L-1", OCCURRED, {}),
        EventItem("late-2", "device.synced", "L-2", OCCURRED, {}),
    ]
    # when a coordinator completes the step between the planning and the locks
    results = events_ingest_many(organization=org, items=items, actor=PARTNER)
    # then the batch saw the completion: its event is redundant
    assert [r.event.disposition for r in results] == [
        EventDisposition.REDUNDANT,
        EventDisposition.DEFERRED,
    ]
    assert results[0].matched_steps == []
    stored = ParticipantEvent.objects.get(event_id="late-1")
    assert (stored.disposition, stored.matched, stored.applied_at) == (
        EventDisposition.REDUNDANT,
        False,
        None,
    )
    step.refresh_from_db()
    assert (step.state, step.completed_via) == (StepState.COMPLETED, "coordinator")
    completions = OutboxEvent.objects.filter(
        event_type="participants.step.completed", payload__step_id=step.pk
    )
    assert completions.count() == 1
    assert Enrollment.objects.get(pk=enrollment.pk).last_event_at == OCCURRED


def test_an_enrollment_withdrawn_meanwhile_is_not_worked_on(org, program, before_locks):
    # given a referred enrollment, and a batch planned to complete its eligibility step
    enrollment = _enrolled(org, program, "X-1")
    before_locks(
        lambda: enrollment_transition(
            enrollment_id=enrollment.pk, transition="withdraw", actor=SYSTEM, reason="moved away"
        )
    )
    # when a coordinator withdraws it between the batch's planning and locks
    results = events_ingest_many(
        organization=org,
        items=[EventItem("after-withdrawal", "eligibility.screened", "X-1", OCCURRED, {})],
        actor=PARTNER,
    )
    # then the event is stored as matching nothing, and the withdrawn enrollment is untouched
    assert results[0].event.disposition == EventDisposition.UNMATCHED
    stored = ParticipantEvent.objects.get(event_id="after-withdrawal")
    assert (stored.disposition, stored.matched) == (EventDisposition.UNMATCHED, False)
    enrollment = Enrollment.objects.get(pk=enrollment.pk)
    assert (enrollment.state, enrollment.last_event_at) == ("withdrawn", None)
    step = StepInstance.objects.get(enrollment=enrollment, step_key="eligibility_review")
    assert step.state != StepState.COMPLETED
    assert not OutboxEvent.objects.filter(event_type="participants.step.completed").exists()


def test_sequence_numbers_stay_gapless_when_another_event_lands_meanwhile(
    org, program, before_locks
):
    # given an enrollment in onboarding, with several event-completed steps open
    enrollment = _enrolled(org, program, "S-1")
    for transition in ("screen_eligible", "invite", "start_onboarding"):
        enrollment = enrollment_transition(
            enrollment_id=enrollment.pk, transition=transition, actor=SYSTEM
        )
    # when a single event completes one step between the batch's planning and locks
    before_locks(lambda: _single_event(org, "single-1", "device.shipped", "S-1"))
    results = events_ingest_many(
        organization=org,
        items=[
            EventItem("batch-1", "device.shipped", "S-1", OCCURRED, {}),
            EventItem("batch-2", "device.synced", "S-1", OCCURRED, {}),
        ],
        actor=PARTNER,
    )
    # then the batch's repeat is redundant, its new step is matched, and the
    # enrollment's event numbers have no gap and no repeat
    assert [r.event.disposition for r in results] == [
        EventDisposition.REDUNDANT,
        EventDisposition.MATCHED,
    ]
    sequences = list(
        OutboxEvent.objects.filter(sequence_key=f"enrollment:{enrollment.pk}")
        .order_by("sequence")
        .values_list("sequence", flat=True)
    )
    assert sequences == list(range(1, len(sequences) + 1))
    enrollment = Enrollment.objects.get(pk=enrollment.pk)
    assert enrollment.event_sequence == sequences[-1]


def test_a_newer_event_and_an_outbox_event_meanwhile_are_built_on(
    org, program, before_locks, monkeypatch
):
    # given a referred enrollment, and a batch planned to complete its eligibility step
    noted = "participants.enrollment.noted"  # an event that changes no state
    monkeypatch.setitem(event_types._catalogue, noted, event_types.EventType(noted, "test"))
    enrollment = _enrolled(org, program, "N-1")
    later = OCCURRED.replace(hour=12)

    def newer_event_and_notice():
        # a newer event that no open step expects (it moves only the last event
        # time), and an outbox event of the enrollment (it moves only its sequence)
        _single_event(org, "newer", "device.synced", "N-1", later)
        with transaction.atomic():
            locked = Enrollment.objects.select_for_update().get(pk=enrollment.pk)
            emit(locked, noted, {})

    before_locks(newer_event_and_notice)
    results = events_ingest_many(
        organization=org,
        items=[EventItem("older", "eligibility.screened", "N-1", OCCURRED, {})],
        actor=PARTNER,
    )
    # then the batch completes the step after the notice, and keeps the newer time
    assert results[0].event.disposition == EventDisposition.MATCHED
    enrollment = Enrollment.objects.get(pk=enrollment.pk)
    assert enrollment.last_event_at == later
    events = list(
        OutboxEvent.objects.filter(sequence_key=f"enrollment:{enrollment.pk}")
        .order_by("sequence")
        .values_list("sequence", "event_type")
    )
    assert [sequence for sequence, _ in events] == list(range(1, len(events) + 1))
    assert events[-2:] == [
        (len(events) - 1, noted),
        (len(events), "participants.step.completed"),
    ]
    assert enrollment.event_sequence == len(events)


def test_an_event_stored_meanwhile_is_answered_as_the_stored_one(org, program, before_locks):
    # given a batch whose first event a retrying client also sends on its own
    _enrolled(org, program, "D-1")
    key = make_key(org)[1]
    http = PartnerHttp(key)
    single = {
        "id": "twice",
        "type": "eligibility.screened",
        "external_ref": "D-1",
        "occurred_at": "2026-01-05T10:00:00Z",
        "data": {},
    }
    before_locks(lambda: PartnerHttp(key).post("/api/v1/events/", single))
    # when the single request commits between the batch's planning and locks
    response = http.post(
        "/api/v1/events/batch/",
        {"events": [single, {**single, "id": "once", "type": "device.synced"}]},
    )
    # then both items are accepted: the repeat as the stored event, nothing twice
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [202, 202]
    assert [r["event"]["disposition"] for r in results] == ["matched", "deferred"]
    assert ParticipantEvent.objects.filter(event_id="twice").count() == 1
    assert OutboxEvent.objects.filter(event_type="participants.step.completed").count() == 1


def _waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def test_a_single_event_waiting_on_a_completion_sees_it(org, program):
    # given a coordinator's transaction that has completed the eligibility step
    # and holds the enrollment's lock
    enrollment = _enrolled(org, program, "W-1")
    step = StepInstance.objects.get(enrollment=enrollment, step_key="eligibility_review")
    completed, release = threading.Event(), threading.Event()
    failures = []

    def coordinator():
        try:
            with transaction.atomic():
                step_complete(step_id=step.pk, actor=SYSTEM, via="coordinator")
                completed.set()
                release.wait(10)
        except Exception as exc:
            failures.append(exc)
        finally:
            connection.close()

    results = []

    def partner():
        try:
            results.append(_single_event(org, "waits", "eligibility.screened", "W-1"))
        except Exception as exc:
            failures.append(exc)
        finally:
            connection.close()

    first = threading.Thread(target=coordinator)
    first.start()
    assert completed.wait(10)
    # when a partner event for the same step arrives and waits for that lock
    second = threading.Thread(target=partner)
    second.start()
    for _ in range(200):
        if _waiting_on_a_lock():
            break
        time.sleep(0.02)
    release.set()
    first.join()
    second.join()
    # then it was read after the commit: redundant, not a second completion
    assert not failures, failures
    assert results[0].event.disposition == EventDisposition.REDUNDANT
    step.refresh_from_db()
    assert step.completed_via == "coordinator"
    completions = OutboxEvent.objects.filter(
        event_type="participants.step.completed", payload__step_id=step.pk
    )
    assert completions.count() == 1
