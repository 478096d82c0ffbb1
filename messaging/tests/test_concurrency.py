"""Races that need real row locks and commits (PostgreSQL)."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.db.models import Count
from django.test import Client

from messaging.models import CallbackLog, Message, MessageState
from messaging.services import messages_dispatch_due
from messaging.tests.conftest import signed
from programs.models import AuditEvent, OpsException

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _in_thread(func):
    def run(*args):
        try:
            return func(*args)
        finally:
            connection.close()

    return run


def test_concurrent_scheduling_of_one_step_creates_one_message(schedule):
    # given 16 workers scheduling the same step's message at once
    @_in_thread
    def attempt(_):
        message, created = schedule(enrollment_id=1, step_instance_id=77, participant_ref="P-1")
        return message.pk, created

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(attempt, range(16)))
    # then one message, one creator, everyone got its id
    assert Message.objects.filter(step_instance_id=77).count() == 1
    assert sum(created for _pk, created in results) == 1
    assert len({pk for pk, _created in results}) == 1
    assert AuditEvent.objects.filter(action="message.scheduled").count() == 1


def test_concurrent_dispatchers_send_each_message_once(program, schedule, sink, webhook_connector):
    program.quiet_hours_start = program.quiet_hours_end = None
    program.save(update_fields=["quiet_hours_start", "quiet_hours_end"])
    from django.test import override_settings

    with override_settings(BATON_MESSAGING_DISPATCH_ON_COMMIT=False):
        for i in range(60):
            schedule(participant_ref=f"P-{i}", step_instance_id=1000 + i)
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(
                pool.map(_in_thread(lambda _: messages_dispatch_due(batch_size=10)), range(4))
            )
    states = dict(Message.objects.values_list("state").annotate(n=Count("pk")))
    assert states == {"sent": 60}, (states, results)
    ids = [r["headers"]["webhook-id"] for r in sink.requests]
    assert len(ids) == len(set(ids)) == 60


def test_r5_one_callback_replayed_1000_times_50_at_a_time_has_one_effect(
    program, schedule, webhook_connector
):
    # given a sent message
    program.quiet_hours_start = program.quiet_hours_end = None
    program.save(update_fields=["quiet_hours_start", "quiet_hours_end"])
    message, _ = schedule()
    messages_dispatch_due()
    message.refresh_from_db()
    assert message.state == MessageState.SENT
    body, headers = signed(
        webhook_connector,
        {"type": "failed", "message_id": message.pk, "error": "carrier rejected"},
        msg_id="cb_r5",
    )
    url = f"/api/v1/messaging/callbacks/{webhook_connector.pk}/"

    @_in_thread
    def post(_):
        response = Client().post(url, data=body, content_type="application/json", headers=headers)
        return response.status_code, response.json().get("status")

    # when the vendor replays it 1,000 times, 50 at a time
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(post, range(1000)))
    # then exactly one side effect
    assert {code for code, _ in results} == {200}
    statuses = [status for _, status in results]
    assert statuses.count("applied") == 1
    assert statuses.count("duplicate") == 999
    message.refresh_from_db()
    assert message.state == MessageState.FAILED
    assert AuditEvent.objects.filter(action="message.failed").count() == 1
    assert CallbackLog.objects.count() == 1
    assert OpsException.objects.get(kind="message_failed").occurrences == 1


def test_concurrent_schedules_for_one_participant_never_exceed_the_daily_cap(
    program, schedule, settings
):
    # given a cap of 3 per local day and no quiet hours (all land on one day)
    settings.BATON_MESSAGING_DAILY_CAP = 3
    settings.BATON_MESSAGING_DISPATCH_ON_COMMIT = False
    program.quiet_hours_start = program.quiet_hours_end = None
    program.save(update_fields=["quiet_hours_start", "quiet_hours_end"])

    # when 12 workers each schedule a different step's message for one participant
    @_in_thread
    def attempt(i):
        message, _created = schedule(
            enrollment_id=1, step_instance_id=500 + i, participant_ref="P-CAPPED"
        )
        return message.state

    with ThreadPoolExecutor(max_workers=12) as pool:
        states = list(pool.map(attempt, range(12)))

    # then exactly the cap is scheduled, the rest suppressed for the cap
    counted = Message.objects.filter(participant_ref="P-CAPPED", state=MessageState.SCHEDULED)
    assert counted.count() == 3, states
    assert states.count(MessageState.SCHEDULED) == 3
    assert (
        Message.objects.filter(
            participant_ref="P-CAPPED", suppression_reason="frequency_cap"
        ).count()
        == 9
    )


def test_concurrent_batches_for_overlapping_participants_keep_the_cap(
    program, templates, org, settings
):
    from messaging.services import ScheduleRequest, messages_schedule_many
    from messaging.tests.conftest import SYSTEM

    program.quiet_hours_start = program.quiet_hours_end = None
    program.save(update_fields=["quiet_hours_start", "quiet_hours_end"])

    # given 6 batches, each with 2 messages for each of the same 5 participants
    # (in a different order per batch, so lock order matters)
    def batch(worker):
        refs = [f"P-{(worker + k) % 5}" for k in range(5)]
        return [
            ScheduleRequest(
                organization=org,
                program=program,
                enrollment_id=1,
                participant_ref=ref,
                participant_timezone="UTC",
                locale="en",
                template_key="invitation",
                channel="sms",
                step_instance_id=10_000 + worker * 100 + n * 10 + j,
            )
            for n, ref in enumerate(refs)
            for j in range(2)
        ]

    @_in_thread
    def run(worker):
        return messages_schedule_many(requests=batch(worker), actor=SYSTEM)

    settings.BATON_MESSAGING_DAILY_CAP = 3
    settings.BATON_MESSAGING_DISPATCH_ON_COMMIT = False
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(run, range(6)))

    # then no participant has more than 3 counted messages, and all 60 exist
    assert Message.objects.count() == 60
    per_participant = dict(
        Message.objects.filter(state=MessageState.SCHEDULED)
        .values_list("participant_ref")
        .annotate(n=Count("pk"))
    )
    assert per_participant == {f"P-{i}": 3 for i in range(5)}
