"""messages_schedule_many: the rules of message_schedule, set-based."""

from datetime import UTC, datetime, time

import pytest
import time_machine

from integrations.models import OutboxEvent
from messaging.errors import TemplateNotFound
from messaging.models import Message, MessageState
from messaging.services import ScheduleRequest, messages_schedule_many, opt_out_record
from messaging.signals import message_status_changed
from messaging.tests.conftest import SYSTEM
from programs.models import AuditEvent

pytestmark = pytest.mark.django_db


def utc(*args):
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def request_for(org, program, templates):
    def make(n, **kwargs):
        params = {
            "organization": org,
            "program": program,
            "enrollment_id": 1000 + n,
            "participant_ref": f"P-{n:04d}",
            "participant_timezone": "UTC",
            "locale": "en",
            "template_key": "invitation",
            "channel": "sms",
            "step_instance_id": 5000 + n,
            "step_title": "Invitation message",
        }
        params.update(kwargs)
        return ScheduleRequest(**params)

    return make


@pytest.fixture
def quiet(program):
    program.quiet_hours_start = time(21, 0)
    program.quiet_hours_end = time(8, 0)
    program.save(update_fields=["quiet_hours_start", "quiet_hours_end"])
    return program


def test_quiet_hours_are_applied_in_each_participants_timezone(quiet, request_for):
    # given 08:00 UTC: 03:00 in New York (quiet), 09:00 in Berlin (allowed)
    with time_machine.travel(utc(2025, 1, 15, 8, 0), tick=False):
        # when
        results = messages_schedule_many(
            requests=[
                request_for(1, participant_timezone="America/New_York"),
                request_for(2, participant_timezone="Europe/Berlin"),
            ],
            actor=SYSTEM,
        )
    # then New York waits until 08:00 EST, Berlin goes now
    (ny, ny_created), (berlin, _) = results
    assert ny_created and ny.scheduled_for == utc(2025, 1, 15, 13, 0)
    assert berlin.scheduled_for == utc(2025, 1, 15, 8, 0)
    audit = AuditEvent.objects.get(object_id=str(ny.pk), action="message.scheduled")
    assert audit.reason.startswith("moved out of quiet hours")


def test_cap_counts_stored_messages_and_earlier_ones_of_the_batch(request_for, settings):
    # given a cap of 3 and one message already stored for the participant today
    settings.BATON_MESSAGING_DAILY_CAP = 3
    with time_machine.travel(utc(2025, 1, 15, 15, 0), tick=False):
        messages_schedule_many(requests=[request_for(1, participant_ref="P-CAP")], actor=SYSTEM)
        # when four more are scheduled in one batch, plus one for someone else
        results = messages_schedule_many(
            requests=[request_for(10 + i, participant_ref="P-CAP") for i in range(4)]
            + [request_for(20, participant_ref="P-OTHER")],
            actor=SYSTEM,
        )
    # then two fit under the cap, the other two are suppressed; the other participant is not
    states = [m.state for m, _ in results]
    assert states == ["scheduled", "scheduled", "suppressed", "suppressed", "scheduled"]
    assert {m.suppression_reason for m, _ in results[2:4]} == {"frequency_cap"}
    assert AuditEvent.objects.filter(action="message.suppressed").count() == 2
    assert OutboxEvent.objects.filter(event_type="messaging.message.suppressed").count() == 2


def test_opt_out_suppresses_or_picks_another_channel(org, request_for):
    opt_out_record(
        organization=org, participant_ref="P-STOP", channel="sms", source="test", actor=SYSTEM
    )
    results = messages_schedule_many(
        requests=[
            request_for(1, participant_ref="P-STOP", channel="sms"),
            request_for(2, participant_ref="P-STOP", channel=None),
        ],
        actor=SYSTEM,
    )
    (fixed, _), (free, _) = results
    assert fixed.state == MessageState.SUPPRESSED and fixed.suppression_reason == "opted_out"
    assert free.channel == "email" and free.state == MessageState.SCHEDULED


def test_dedup_against_stored_and_within_the_batch(request_for):
    ((first, _),) = messages_schedule_many(requests=[request_for(1)], actor=SYSTEM)
    results = messages_schedule_many(
        requests=[
            request_for(1),  # same step and template as the stored one
            request_for(2, step_instance_id=None, dedup_key="nudge:1"),
            request_for(3, step_instance_id=None, dedup_key="nudge:1"),  # same key, same batch
        ],
        actor=SYSTEM,
    )
    assert results[0] == (first, False)
    assert results[1][1] is True
    assert results[2] == (results[1][0], False)
    assert Message.objects.count() == 2


def test_signals_audit_and_outbox_match_message_schedule(request_for):
    seen = []

    def receiver(sender, message, from_state, to_state, **kwargs):
        seen.append((message.pk, from_state, to_state))

    message_status_changed.connect(receiver)
    try:
        results = messages_schedule_many(requests=[request_for(i) for i in range(3)], actor=SYSTEM)
    finally:
        message_status_changed.disconnect(receiver)
    assert seen == [(m.pk, "", "scheduled") for m, _ in results]
    events = OutboxEvent.objects.filter(event_type="messaging.message.scheduled")
    assert sorted(e.payload["message_id"] for e in events) == sorted(m.pk for m, _ in results)
    assert all(e.payload["state"] == "scheduled" for e in events)


def test_missing_template_schedules_nothing(request_for):
    with pytest.raises(TemplateNotFound):
        messages_schedule_many(
            requests=[request_for(1), request_for(2, template_key="nope")], actor=SYSTEM
        )
    assert not Message.objects.exists()


def test_query_count_does_not_grow_with_the_batch(
    request_for, django_assert_max_num_queries, settings
):
    settings.BATON_MESSAGING_DAILY_CAP = 3
    messages_schedule_many(requests=[request_for(0)], actor=SYSTEM)  # warm caches
    with django_assert_max_num_queries(12):
        results = messages_schedule_many(
            requests=[request_for(i, participant_ref=f"P-{i % 7}") for i in range(1, 61)],
            actor=SYSTEM,
        )
    assert len(results) == 60
