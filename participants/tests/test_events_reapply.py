"""Recovery of unmatched partner events: the `unmatched_event` item's retry
action applies the stored events again once they can match."""

from datetime import UTC, datetime

import pytest

from participants.models import EventDisposition, ParticipantEvent, StepState
from participants.services import enrollment_open, event_ingest, participant_upsert
from programs.actors import Actor
from programs.models import AuditEvent, ExceptionState, OpsException
from programs.services import exception_retry

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("test")
SCREENED_AT = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def _early_event(org, event_id="evt-early-1", occurred_at=SCREENED_AT):
    return event_ingest(
        organization=org,
        event_id=event_id,
        event_type="eligibility.screened",
        external_ref="LATE-REF-1",
        occurred_at=occurred_at,
        data={"result": "eligible"},
        actor=SYSTEM,
        source="ehr",
    )


def test_events_for_a_participant_referred_later_apply_on_retry(org, program, coordinator):
    # given: the EHR's screening result arrived before the referral
    first = _early_event(org)
    _early_event(org, "evt-early-2", SCREENED_AT.replace(hour=16))  # a repeat, later
    item = first.exception
    item.refresh_from_db()
    assert item.kind == "unmatched_event" and item.occurrences == 2
    participant, _ = participant_upsert(organization=org, external_ref="LATE-REF-1", actor=SYSTEM)
    enrollment, _ = enrollment_open(participant=participant, program=program, actor=SYSTEM)
    # when: the coordinator runs the item's retry action
    outcome = exception_retry(exception_id=item.pk, actor=coordinator)
    # then: the older event completed the eligibility step (at its own time),
    # the repeat is redundant, and the item resolved itself
    step = enrollment.steps.get(step_key="eligibility_review")
    assert step.state == StepState.COMPLETED
    assert (step.completed_via, step.completed_at) == ("event", SCREENED_AT)
    dispositions = dict(
        ParticipantEvent.objects.filter(external_ref="LATE-REF-1").values_list(
            "event_id", "disposition"
        )
    )
    assert dispositions == {
        "evt-early-1": EventDisposition.MATCHED,
        "evt-early-2": EventDisposition.REDUNDANT,
    }
    assert "2 event(s) applied" in outcome and outcome.changed
    item.refresh_from_db()
    assert item.state == ExceptionState.RESOLVED
    assert AuditEvent.objects.filter(action="exception.retried", object_id=str(item.pk)).exists()
    assert AuditEvent.objects.filter(action="exception.auto_resolved").exists()


def test_retry_before_the_participant_exists_changes_nothing(org, program, coordinator):
    # given
    item = _early_event(org).exception
    # when
    outcome = exception_retry(exception_id=item.pk, actor=coordinator)
    # then: the event still waits, and so does the item
    assert "1 still match nothing" in outcome
    assert not outcome.changed  # the console reports it as a warning, not a success
    event = ParticipantEvent.objects.get(event_id="evt-early-1")
    assert event.disposition == EventDisposition.UNKNOWN_PARTICIPANT
    item.refresh_from_db()
    assert item.state != ExceptionState.RESOLVED
    assert OpsException.objects.filter(kind="unmatched_event").count() == 1
