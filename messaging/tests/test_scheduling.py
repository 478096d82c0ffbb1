"""Scheduling: quiet hours across DST and timezones, caps, opt-outs, dedup, cancel."""

from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError

from integrations.models import OutboxEvent
from messaging.errors import TemplateNotFound
from messaging.models import Message, MessageState, MessageTemplate
from messaging.services import (
    message_schedule_reminder,
    messages_cancel_for_enrollment,
    opt_out_record,
    template_create,
)
from messaging.signals import message_status_changed
from messaging.tests.conftest import SYSTEM
from programs.errors import ImmutableVersionError
from programs.models import AuditEvent

pytestmark = pytest.mark.django_db


def utc(*args):
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def quiet(program):
    """Quiet hours 21:00-08:00 (the DPP default)."""
    program.quiet_hours_start = time(21, 0)
    program.quiet_hours_end = time(8, 0)
    program.save(update_fields=["quiet_hours_start", "quiet_hours_end"])
    return program


class TestQuietHours:
    def test_message_due_at_3am_new_york_waits_until_8am_local(self, quiet, schedule):
        # given 03:00 in New York (EST, UTC-5) on a winter day
        with time_machine.travel(utc(2025, 1, 15, 8, 0), tick=False):
            # when
            message, created = schedule(participant_timezone="America/New_York")
        # then it goes out at 08:00 EST = 13:00 UTC
        assert created
        assert message.scheduled_for == utc(2025, 1, 15, 13, 0)
        assert message.state == MessageState.SCHEDULED

    def test_evening_message_moves_to_next_morning(self, quiet, schedule):
        # given 22:30 in Los Angeles (PST, UTC-8)
        with time_machine.travel(utc(2025, 1, 16, 6, 30), tick=False):
            message, _ = schedule(participant_timezone="America/Los_Angeles")
        # then 08:00 PST the next day
        assert message.scheduled_for == utc(2025, 1, 16, 16, 0)

    def test_same_instant_is_allowed_for_a_participant_elsewhere(self, quiet, schedule):
        # given 08:00 UTC is 09:00 in Berlin (allowed) but 03:00 in New York
        with time_machine.travel(utc(2025, 1, 15, 8, 0), tick=False):
            berlin, _ = schedule(participant_timezone="Europe/Berlin")
        assert berlin.scheduled_for == utc(2025, 1, 15, 8, 0)

    def test_spring_forward_night_ends_at_8am_daylight_time(self, quiet, schedule):
        # given 01:30 EST on 2025-03-09, the night clocks jump 02:00 -> 03:00
        with time_machine.travel(utc(2025, 3, 9, 6, 30), tick=False):
            message, _ = schedule(participant_timezone="America/New_York")
        # then 08:00 EDT (UTC-4) = 12:00 UTC, not 13:00
        assert message.scheduled_for == utc(2025, 3, 9, 12, 0)

    def test_fall_back_night_ends_at_8am_standard_time(self, quiet, schedule):
        # given 01:30 EDT on 2025-11-02, the night clocks fall back 02:00 -> 01:00
        with time_machine.travel(utc(2025, 11, 2, 5, 30), tick=False):
            message, _ = schedule(participant_timezone="America/New_York")
        # then 08:00 EST (UTC-5) = 13:00 UTC
        assert message.scheduled_for == utc(2025, 11, 2, 13, 0)

    def test_quiet_hours_end_inside_the_dst_gap_moves_past_the_gap(self, program, schedule):
        # given quiet hours ending at 02:30, a wall time that does not exist on 2025-03-09
        program.quiet_hours_start = time(23, 0)
        program.quiet_hours_end = time(2, 30)
        program.save(update_fields=["quiet_hours_start", "quiet_hours_end"])
        with time_machine.travel(utc(2025, 3, 9, 5, 0), tick=False):  # 00:00 EST
            message, _ = schedule(participant_timezone="America/New_York")
        # then it goes at 03:30 EDT (07:30 UTC): after the gap, never inside quiet hours
        assert message.scheduled_for == utc(2025, 3, 9, 7, 30)

    def test_unknown_participant_timezone_falls_back_to_program_timezone(self, quiet, schedule):
        with time_machine.travel(utc(2025, 1, 15, 8, 0), tick=False):
            message, _ = schedule(participant_timezone="Mars/Olympus")
        assert message.participant_timezone == "America/New_York"
        assert message.scheduled_for == utc(2025, 1, 15, 13, 0)

    def test_quiet_hours_past_expiry_suppress(self, quiet, schedule, program):
        # given a time-sensitive template that expires 2 hours after it is due
        template_create(
            program=program,
            key="session_soon",
            channel="sms",
            body="Your {{ step_title }} starts soon",
            expires_after=timedelta(hours=2),
            actor=SYSTEM,
            publish=True,
        )
        # when it is due at 23:00 New York time
        with time_machine.travel(utc(2025, 1, 16, 4, 0), tick=False):
            message, _ = schedule(
                template_key="session_soon", participant_timezone="America/New_York"
            )
        # then it is suppressed rather than sent at 08:00
        assert message.state == MessageState.SUPPRESSED
        assert message.suppression_reason == "quiet_hours"


class TestCapsOptOutsDedup:
    def test_daily_cap_suppresses_the_fourth_message_of_the_local_day(self, schedule, settings):
        settings.BATON_MESSAGING_DAILY_CAP = 3
        with time_machine.travel(utc(2025, 1, 15, 15, 0), tick=False):
            results = [
                schedule(participant_ref="P-CAP", enrollment_id=1, step_instance_id=90 + i)[0]
                for i in range(4)
            ]
        assert [m.state for m in results[:3]] == [MessageState.SCHEDULED] * 3
        assert results[3].state == MessageState.SUPPRESSED
        assert results[3].suppression_reason == "frequency_cap"

    def test_cap_counts_the_participants_local_day_not_utc(self, schedule, settings, program):
        # given no quiet hours, so the times below stand as they are
        program.quiet_hours_start = program.quiet_hours_end = None
        program.save(update_fields=["quiet_hours_start", "quiet_hours_end"])
        settings.BATON_MESSAGING_DAILY_CAP = 1
        tz = "America/Los_Angeles"
        # given one message at 23:00 PST on Jan 15 (07:00 UTC Jan 16)
        with time_machine.travel(utc(2025, 1, 16, 7, 0), tick=False):
            first, _ = schedule(participant_ref="P-LA", participant_timezone=tz)
        # when another goes at 01:00 PST on Jan 16 (09:00 UTC): a new local day
        with time_machine.travel(utc(2025, 1, 16, 9, 0), tick=False):
            second, _ = schedule(participant_ref="P-LA", participant_timezone=tz)
        # and a third at 15:00 PST the same local day
        with time_machine.travel(utc(2025, 1, 16, 23, 0), tick=False):
            third, _ = schedule(participant_ref="P-LA", participant_timezone=tz)
        assert first.state == second.state == MessageState.SCHEDULED
        assert third.state == MessageState.SUPPRESSED

    def test_opted_out_channel_is_suppressed_when_channel_is_fixed(self, schedule, org):
        opt_out_record(
            organization=org, participant_ref="P-STOP", channel="sms", source="test", actor=SYSTEM
        )
        message, _ = schedule(participant_ref="P-STOP", channel="sms")
        assert message.state == MessageState.SUPPRESSED
        assert message.suppression_reason == "opted_out"

    def test_without_channel_an_opted_out_channel_is_avoided(self, schedule, org):
        opt_out_record(
            organization=org, participant_ref="P-STOP", channel="sms", source="test", actor=SYSTEM
        )
        message, _ = schedule(participant_ref="P-STOP", channel=None)
        assert message.channel == "email"
        assert message.state == MessageState.SCHEDULED

    def test_opt_out_suppresses_already_scheduled_messages(self, schedule, org):
        message, _ = schedule(participant_ref="P-LATE")
        opt_out_record(
            organization=org, participant_ref="P-LATE", channel="sms", source="test", actor=SYSTEM
        )
        message.refresh_from_db()
        assert message.state == MessageState.SUPPRESSED

    def test_same_step_and_template_never_gives_two_messages(self, schedule):
        first, created_first = schedule(enrollment_id=7, step_instance_id=70)
        again, created_again = schedule(enrollment_id=7, step_instance_id=70)
        assert created_first and not created_again
        assert again.pk == first.pk
        assert Message.objects.filter(step_instance_id=70).count() == 1

    def test_dedup_key_is_honoured_without_a_step(self, schedule):
        first, _ = schedule(step_instance_id=None, dedup_key="nudge:2025-01")
        again, created = schedule(step_instance_id=None, dedup_key="nudge:2025-01")
        assert not created and again.pk == first.pk

    def test_reminder_is_a_separate_message_once_per_step(self, schedule, org, program):
        original, _ = schedule(enrollment_id=8, step_instance_id=80)
        kwargs = dict(
            organization=org,
            program=program,
            enrollment_id=8,
            participant_ref=original.participant_ref,
            participant_timezone="UTC",
            locale="en",
            step_instance_id=80,
            step_title="Invitation message",
            reminder_template="invitation_reminder",
            actor=SYSTEM,
        )
        reminder, created = message_schedule_reminder(**kwargs)
        repeat, created_again = message_schedule_reminder(**kwargs)
        assert created and not created_again and repeat.pk == reminder.pk
        assert reminder.kind == "reminder"
        assert reminder.pk != original.pk

    def test_missing_template_is_a_clear_error(self, schedule):
        with pytest.raises(TemplateNotFound, match="no published template 'nope'"):
            schedule(template_key="nope")

    def test_locale_falls_back_to_language_then_english(self, schedule, program):
        template_create(
            program=program,
            key="invitation",
            channel="sms",
            locale="es",
            body="Únase al {{ program_name }}",
            actor=SYSTEM,
            publish=True,
        )
        spanish, _ = schedule(locale="es-US")
        french, _ = schedule(locale="fr")
        assert spanish.template.locale == "es"
        assert french.template.locale == "en"


class TestRecording:
    def test_scheduling_is_audited_with_an_outbox_event_and_a_signal(self, schedule):
        seen = []

        def receiver(sender, message, from_state, to_state, **kwargs):
            seen.append((message.pk, from_state, to_state))

        message_status_changed.connect(receiver)
        try:
            message, _ = schedule()
        finally:
            message_status_changed.disconnect(receiver)
        assert seen == [(message.pk, "", "scheduled")]
        audit = AuditEvent.objects.get(object_type="messaging.message", object_id=str(message.pk))
        assert audit.action == "message.scheduled"
        event = OutboxEvent.objects.get(event_type="messaging.message.scheduled")
        assert event.payload["message_id"] == message.pk
        assert event.payload["participant_ref"] == message.participant_ref
        assert "body" not in event.payload

    def test_message_records_template_version_and_phi_free_variables(self, schedule):
        message, _ = schedule(due_at=utc(2025, 3, 4, 15, 0))
        assert message.template_version == 1
        assert message.variables["program_name"] == "Diabetes Prevention Program"
        assert message.variables["due_date"] == "Tue 4 Mar"
        assert set(message.variables) == {
            "program_name",
            "organization_name",
            "step_title",
            "due_date",
            "due_time",
            "link_join",
        }

    def test_cancel_for_enrollment_cancels_pending_only(self, schedule):
        keep, _ = schedule(enrollment_id=9, step_instance_id=91)
        gone, _ = schedule(enrollment_id=9, step_instance_id=92, template_key="welcome")
        Message.objects.filter(pk=keep.pk)  # both scheduled
        canceled = messages_cancel_for_enrollment(enrollment_id=9, reason="withdrawn", actor=SYSTEM)
        assert canceled == 2
        gone.refresh_from_db()
        assert gone.state == MessageState.CANCELED
        audit = AuditEvent.objects.filter(action="message.canceled", object_id=str(gone.pk)).get()
        assert audit.reason == "withdrawn"

    def test_cancel_keep_states_leaves_those_alone(self, schedule):
        schedule(enrollment_id=10, step_instance_id=101)
        assert (
            messages_cancel_for_enrollment(
                enrollment_id=10, reason="x", actor=SYSTEM, keep_states={"scheduled"}
            )
            == 0
        )


class TestTemplates:
    def test_unknown_variable_is_named(self, program):
        with pytest.raises(ValidationError) as info:
            template_create(
                program=program, key="t", channel="sms", body="Hi {{ coach }}", actor=SYSTEM
            )
        assert "{{ coach }} is an unknown variable" in str(info.value)

    def test_identifying_variable_is_disallowed(self, program):
        with pytest.raises(ValidationError) as info:
            template_create(
                program=program,
                key="t",
                channel="sms",
                body="Hi {{ first_name }}, call {{ phone_number }}",
                actor=SYSTEM,
            )
        text = str(info.value)
        assert "{{ first_name }} is disallowed" in text
        assert "{{ phone_number }} is disallowed" in text

    def test_published_version_is_immutable(self, templates):
        template = templates[("welcome", "sms")]
        template.body = "Changed {{ program_name }}"
        with pytest.raises(ImmutableVersionError):
            template.save()
        assert (
            MessageTemplate.objects.get(pk=template.pk).body == "Welcome to the {{ program_name }}"
        )

    def test_new_version_is_used_by_new_messages_old_ones_keep_theirs(self, schedule, program):
        old, _ = schedule(template_key="welcome")
        template_create(
            program=program,
            key="welcome",
            channel="sms",
            body="v2 {{ program_name }}",
            actor=SYSTEM,
            publish=True,
        )
        new, _ = schedule(template_key="welcome")
        assert (old.template_version, new.template_version) == (1, 2)
