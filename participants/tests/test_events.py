"""Partner events: matching, duplicates, out-of-order and unknown participants."""

from datetime import timedelta

import pytest
from django.utils import timezone

from integrations.models import OutboxEvent
from participants.models import EventDisposition, ParticipantEvent, StepState
from participants.services import enrollment_transition, event_ingest
from participants.tests.conftest import SYSTEM
from programs.actors import Actor
from programs.models import OpsException

API = Actor(kind=Actor.API_CLIENT, id="1", label="api:device-vendor")


def ingest(org, event_id, event_type, ref="ref-001", occurred_at=None, **kw):
    return event_ingest(
        organization=org,
        event_id=event_id,
        event_type=event_type,
        external_ref=ref,
        occurred_at=occurred_at or timezone.now(),
        data=kw.pop("data", {"status": "ok"}),
        actor=API,
        source="device-vendor",
        **kw,
    )


def onboarding(enrollment):
    for name in ("screen_eligible", "invite", "start_onboarding"):
        enrollment = enrollment_transition(
            enrollment_id=enrollment.pk, transition=name, actor=SYSTEM
        )
    return enrollment


def test_matching_event_completes_its_step(org, dpp_enrollment):
    # given a referred DPP enrollment waiting for eligibility.screened
    occurred = timezone.now() - timedelta(hours=2)

    # when the event arrives
    result = ingest(org, "evt-1", "eligibility.screened", occurred_at=occurred)

    # then the step completed via event, at the time the event occurred
    assert result.created and result.exception is None
    assert [s.step_key for s in result.matched_steps] == ["eligibility_review"]
    step = dpp_enrollment.steps.get(step_key="eligibility_review")
    assert step.state == StepState.COMPLETED
    assert step.completed_via == "event"
    assert step.completed_at == occurred
    assert step.completed_by_event == result.event
    assert result.event.matched and result.event.disposition == EventDisposition.MATCHED
    assert OutboxEvent.objects.filter(
        event_type="participants.step.completed", payload__step_id=step.pk
    ).exists()


def test_duplicate_event_id_returns_original_without_side_effects(org, dpp_enrollment):
    # given an event already ingested
    first = ingest(org, "evt-1", "eligibility.screened")
    outbox = OutboxEvent.objects.count()

    # when the same id arrives again (even with another body)
    again = ingest(org, "evt-1", "device.synced", data={"other": 1})

    # then the original comes back, and nothing else happens
    assert not again.created
    assert again.event.pk == first.event.pk
    assert again.event.event_type == "eligibility.screened"
    assert again.matched_steps == [] and again.exception is None
    assert ParticipantEvent.objects.count() == 1
    assert OutboxEvent.objects.count() == outbox


def test_same_event_id_in_another_organization_is_distinct(org, other_org, dpp_enrollment):
    ingest(org, "evt-1", "eligibility.screened")
    other = ingest(other_org, "evt-1", "eligibility.screened", ref="ref-x")
    assert other.created
    assert other.event.disposition == EventDisposition.UNKNOWN_PARTICIPANT


def test_unknown_participant_event_is_stored_and_queued(org):
    # when an event names a reference nobody has
    result = ingest(org, "evt-9", "device.synced", ref="nobody")

    # then it is stored, and an unmatched_event item is open
    event = ParticipantEvent.objects.get(event_id="evt-9")
    assert event.participant is None
    assert event.disposition == EventDisposition.UNKNOWN_PARTICIPANT
    assert result.exception.kind == "unmatched_event"
    assert result.exception.state == "open"
    assert result.exception.subject_id == str(event.pk)
    assert OutboxEvent.objects.filter(event_type="participants.event.unmatched").count() == 1

    # and a second one for the same reference and type counts, not duplicates
    again = ingest(org, "evt-10", "device.synced", ref="nobody")
    assert again.exception.pk == result.exception.pk
    assert OpsException.objects.get(pk=result.exception.pk).occurrences == 2


def test_event_no_step_expects_is_queued(org, dpp_enrollment):
    result = ingest(org, "evt-2", "pharmacy.refilled")
    assert result.event.disposition == EventDisposition.UNMATCHED
    assert result.event.participant_id == dpp_enrollment.participant_id
    assert result.exception.kind == "unmatched_event"


def test_event_for_a_later_stage_is_deferred_then_applied(org, dpp_enrollment):
    # given a referred enrollment, a device sync arrives early (before onboarding)
    occurred = timezone.now() - timedelta(days=1)
    early = ingest(org, "evt-3", "device.synced", occurred_at=occurred)
    assert early.event.disposition == EventDisposition.DEFERRED
    assert early.exception is None

    # when the enrollment reaches onboarding
    enrollment = onboarding(dpp_enrollment)

    # then the step completes from the stored event
    step = enrollment.steps.get(step_key="first_device_sync")
    assert step.state == StepState.COMPLETED
    assert step.completed_at == occurred
    early.event.refresh_from_db()
    assert early.event.disposition == EventDisposition.MATCHED


def test_out_of_order_events_are_all_applied_and_advance(org, dpp_enrollment):
    # given an onboarding enrollment
    enrollment = onboarding(dpp_enrollment)
    now = timezone.now()

    # when the onboarding events arrive newest first
    ingest(org, "e4", "coaching.intro_completed", occurred_at=now - timedelta(hours=1))
    ingest(org, "e3", "device.synced", occurred_at=now - timedelta(hours=2))
    ingest(org, "e2", "device.shipped", occurred_at=now - timedelta(hours=3))
    enrollment.refresh_from_db()
    assert enrollment.last_event_at == now - timedelta(hours=1)
    assert enrollment.state == "onboarding"
    ingest(org, "e1", "consent.recorded", occurred_at=now - timedelta(hours=4))

    # then each step holds its own occurred_at, and the enrollment advanced
    enrollment.refresh_from_db()
    assert enrollment.state == "active"
    assert enrollment.last_event_at == now - timedelta(hours=1)  # never moves backwards
    consent = enrollment.steps.get(step_key="consent_recorded")
    assert consent.completed_at == now - timedelta(hours=4)


def test_repeat_of_an_already_applied_event_type_is_redundant(org, dpp_enrollment):
    ingest(org, "evt-1", "eligibility.screened")
    again = ingest(org, "evt-1b", "eligibility.screened")
    assert again.event.disposition == EventDisposition.REDUNDANT
    assert again.exception is None and again.matched_steps == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("event_id", "", "event_id"),
        ("event_type", "", "event_type"),
        ("external_ref", "", "external_ref"),
        ("occurred_at", "yesterday", "occurred_at"),
        ("data", ["not", "an", "object"], "data"),
    ],
)
def test_bad_input_names_the_field_and_stores_nothing(org, field, value, message):
    kwargs = {
        "organization": org,
        "event_id": "e",
        "event_type": "device.synced",
        "external_ref": "r",
        "occurred_at": timezone.now(),
        "data": {},
        "actor": API,
    }
    kwargs[field] = value
    with pytest.raises(ValueError, match=message):
        event_ingest(**kwargs)
    assert ParticipantEvent.objects.count() == 0


def test_naive_occurred_at_is_refused(org):
    with pytest.raises(ValueError, match="timezone"):
        ingest(org, "e", "device.synced", occurred_at=timezone.now().replace(tzinfo=None))
