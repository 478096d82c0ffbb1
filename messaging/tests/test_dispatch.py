"""Dispatch through the console and webhook connectors; failures reach the queue."""

import json
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from standardwebhooks import Webhook

from integrations.models import OutboxEvent
from messaging.models import DeliveryAttempt, MessageState
from messaging.services import messages_dispatch_due, opt_out_record
from messaging.signals import message_status_changed
from messaging.tests.conftest import SYSTEM
from programs.models import OpsException
from programs.services import exception_retry

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_quiet_hours(program):
    program.quiet_hours_start = program.quiet_hours_end = None
    program.save(update_fields=["quiet_hours_start", "quiet_hours_end"])


def test_console_connector_delivers_logs_and_records_the_would_be_send(schedule, caplog):
    # given a due message and no connector configured (console is the default)
    message, _ = schedule()
    transitions = []
    message_status_changed.connect(
        lambda sender, message, from_state, to_state, **kw: transitions.append(to_state),
        weak=False,
        dispatch_uid="t-console",
    )
    try:
        # when the dispatcher runs
        with caplog.at_level("INFO", logger="baton.connectors"):
            stats = messages_dispatch_due()
    finally:
        message_status_changed.disconnect(dispatch_uid="t-console")
    # then it went queued -> sent -> delivered, logged and stored
    message.refresh_from_db()
    assert message.state == MessageState.DELIVERED
    assert transitions == ["queued", "sent", "delivered"]
    assert stats["delivered"] == 1
    assert f"message={message.pk}" in caplog.text
    attempt = DeliveryAttempt.objects.get(message=message)
    assert attempt.connector_kind == "console"
    assert attempt.record["would_send"]["body"].startswith("Join the Diabetes Prevention Program")
    assert attempt.record["would_send"]["participant_ref"] == message.participant_ref
    types = set(OutboxEvent.objects.values_list("event_type", flat=True))
    assert {"messaging.message.queued", "messaging.message.sent"} <= types


def test_future_messages_wait(schedule):
    message, _ = schedule(not_before=timezone.now() + timedelta(hours=2))
    assert messages_dispatch_due().get("claimed", 0) == 0
    with time_machine.travel(timezone.now() + timedelta(hours=3)):
        messages_dispatch_due()
    message.refresh_from_db()
    assert message.state == MessageState.DELIVERED


def test_webhook_connector_sends_a_signed_phi_free_request(schedule, sink, webhook_connector):
    # given
    message, _ = schedule()
    # when
    messages_dispatch_due()
    # then the tool got one request, verifiable with the standardwebhooks library
    assert len(sink.requests) == 1
    request = sink.requests[0]
    headers = {k.lower(): v for k, v in request["headers"].items()}
    Webhook(webhook_connector.secret).verify(request["body"], headers)
    body = json.loads(request["body"])
    assert body["message_id"] == message.pk
    assert body["template_key"] == "invitation"
    assert body["participant_ref"] == message.participant_ref
    assert body["variables"]["program_name"] == "Diabetes Prevention Program"
    assert headers["webhook-id"] == f"msg_{message.pk}"
    message.refresh_from_db()
    assert message.state == MessageState.SENT
    assert message.vendor_message_id == "vendor-1"
    assert message.connector_id == webhook_connector.pk


def test_tool_500_retries_then_fails_into_the_exception_queue(
    schedule, sink, webhook_connector, settings
):
    # given a tool that keeps answering 500
    settings.BATON_MESSAGING_RETRY_DELAYS = (10, 20)
    sink.status = 500
    message, _ = schedule(enrollment_id=42)
    # when the dispatcher runs at each retry time
    messages_dispatch_due()
    message.refresh_from_db()
    assert message.state == MessageState.QUEUED and message.attempts == 1
    for minutes in (1, 2):
        with time_machine.travel(timezone.now() + timedelta(minutes=minutes)):
            messages_dispatch_due()
    # then three attempts, the message failed, and one exception is open
    message.refresh_from_db()
    assert len(sink.requests) == 3
    assert {r["headers"]["webhook-id"] for r in sink.requests} == {f"msg_{message.pk}"}
    assert message.state == MessageState.FAILED
    assert "HTTP 500" in message.last_error
    item = OpsException.objects.get(kind="message_failed")
    assert item.dedup_key == "message_failed:42:invitation"
    assert item.subject_id == str(message.pk)


def test_410_is_undeliverable_at_once(schedule, sink, webhook_connector):
    sink.status = 410
    message, _ = schedule()
    messages_dispatch_due()
    message.refresh_from_db()
    assert message.state == MessageState.UNDELIVERABLE
    assert OpsException.objects.filter(kind="message_failed", state="open").count() == 1


def test_unreachable_tool_is_retried_not_crashed(schedule, webhook_connector):
    webhook_connector.url = "http://127.0.0.1:9/nothing-listens"
    webhook_connector.save()
    message, _ = schedule()
    stats = messages_dispatch_due()
    message.refresh_from_db()
    assert stats["retrying"] == 1
    assert message.state == MessageState.QUEUED
    assert DeliveryAttempt.objects.get(message=message).outcome == "failed_retry"


def test_unsafe_url_fails_without_sending(schedule, webhook_connector, settings):
    settings.BATON_ALLOW_INSECURE_WEBHOOKS = False
    message, _ = schedule()
    messages_dispatch_due()
    message.refresh_from_db()
    assert message.state == MessageState.FAILED
    assert "refused URL" in message.last_error


def test_opt_out_after_scheduling_is_applied_at_dispatch(schedule, org, sink, webhook_connector):
    from messaging.models import OptOut

    message, _ = schedule(participant_ref="P-LATE")
    # an opt-out row written without the service (e.g. a race): dispatch re-checks
    OptOut.objects.create(organization=org, participant_ref="P-LATE", channel="sms")
    messages_dispatch_due()
    message.refresh_from_db()
    assert message.state == MessageState.SUPPRESSED
    assert sink.requests == []


def test_resend_retry_action_sends_again_and_resolves_the_exception(
    schedule, sink, webhook_connector
):
    # given an undeliverable message with an open exception
    sink.status = 410
    message, _ = schedule()
    messages_dispatch_due()
    item = OpsException.objects.get(kind="message_failed")
    # when the tool is fixed and a coordinator presses Resend
    sink.status = 202
    outcome = exception_retry(exception_id=item.pk, actor=SYSTEM, label="Resend")
    messages_dispatch_due()
    # then the message is sent and the exception auto-resolved
    message.refresh_from_db()
    item.refresh_from_db()
    assert "rescheduled" in outcome
    assert message.state == MessageState.SENT
    assert item.state == "resolved" and item.auto_resolved


def test_switch_channel_retry_action_moves_to_email(schedule, sink, webhook_connector, org):
    sink.status = 410
    message, _ = schedule(participant_ref="P-SW")
    messages_dispatch_due()
    opt_out_record(
        organization=org, participant_ref="P-SW", channel="sms", source="t", actor=SYSTEM
    )
    item = OpsException.objects.get(kind="message_failed")
    sink.status = 202
    outcome = exception_retry(exception_id=item.pk, actor=SYSTEM, label="Switch channel")
    messages_dispatch_due()
    message.refresh_from_db()
    assert "from sms to email" in outcome
    assert message.channel == "email" and message.state == MessageState.SENT


def test_canceled_messages_are_not_sent(schedule, sink, webhook_connector):
    from messaging.services import messages_cancel_for_enrollment

    schedule(enrollment_id=77)
    messages_cancel_for_enrollment(enrollment_id=77, reason="withdrawn", actor=SYSTEM)
    messages_dispatch_due()
    assert sink.requests == []


def test_timeline_contributor_yields_rows_for_the_enrollment(schedule):
    from types import SimpleNamespace

    from messaging.selectors import timeline_rows_for_enrollment
    from programs.registries import registry

    assert timeline_rows_for_enrollment in registry.timeline_contributors
    message, _ = schedule(enrollment_id=55)
    schedule(enrollment_id=56)
    messages_dispatch_due()
    mine = list(timeline_rows_for_enrollment(SimpleNamespace(pk=55)))
    assert len(mine) == 1
    assert mine[0].title == "Message invitation delivered"
    assert mine[0].url.endswith(f"/messaging/message/{message.pk}/change/")


def test_batches_are_pipelined_and_every_message_is_recorded_once(schedule):
    # given 25 due messages and batches of 10 (sent while the previous is recorded)
    from programs.models import AuditEvent

    messages = [schedule()[0] for _ in range(25)]
    # when
    stats = messages_dispatch_due(batch_size=10)
    # then three batches, each message delivered once with one attempt and its audit rows
    assert stats["batches"] == 3 and stats["delivered"] == 25
    assert DeliveryAttempt.objects.count() == 25
    for action in ("message.queued", "message.sent", "message.delivered"):
        assert AuditEvent.objects.filter(action=action).count() == 25
    states = {m.state for m in type(messages[0]).objects.filter(pk__in=[m.pk for m in messages])}
    assert states == {MessageState.DELIVERED}


def test_message_canceled_while_in_flight_keeps_its_state(schedule, monkeypatch):
    # given a message whose send is in flight when a person cancels it
    from messaging.services import dispatch, message_cancel
    from programs.models import AuditEvent

    message, _ = schedule()
    record = dispatch._record_batch

    def cancel_then_record(sent, *args):
        message_cancel(message_id=message.pk, reason="withdrawn", actor=SYSTEM)
        record(sent, *args)

    monkeypatch.setattr(dispatch, "_record_batch", cancel_then_record)
    # when the dispatcher records the send
    stats = messages_dispatch_due()
    # then the message stays canceled, the attempt is kept and the late send audited
    message.refresh_from_db()
    assert message.state == MessageState.CANCELED
    assert stats["stale"] == 1
    assert DeliveryAttempt.objects.filter(message=message).count() == 1
    assert AuditEvent.objects.filter(action="message.sent_after_cancel").count() == 1


def test_dispatch_queries_do_not_grow_with_the_batch(schedule):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = []
    for count in (5, 40):
        # given `count` due messages (console connector)
        for _ in range(count):
            schedule()
        # when one batch takes them all
        with CaptureQueriesContext(connection) as captured:
            stats = messages_dispatch_due(batch_size=100)
        assert stats["delivered"] == count
        counts.append(len(captured))
    # then the same number of statements for 5 and for 40 messages
    assert counts[0] == counts[1] <= 30, counts
