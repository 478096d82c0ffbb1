"""Cross-app flow: a message step schedules its message through messaging,
the console connector delivers it, and the step completes by itself."""

from datetime import UTC, datetime

import pytest

from integrations.models import OutboxEvent
from messaging.management.commands.load_templates import load_templates
from messaging.models import Message
from messaging.tasks import dispatch_due_messages
from participants.models import StepState
from participants.services import enrollment_open, enrollment_transition, participant_upsert
from programs.actors import Actor

SYSTEM = Actor.system("test")


@pytest.mark.django_db
def test_invitation_message_is_sent_and_completes_its_step(program, time_machine):
    # given: published templates and a referral screened eligible
    load_templates(program=program, actor=SYSTEM)
    participant, _ = participant_upsert(
        organization=program.organization, external_ref="EHR-7F3K2", actor=SYSTEM
    )
    enrollment, _ = enrollment_open(participant=participant, program=program, actor=SYSTEM)
    enrollment_transition(enrollment_id=enrollment.pk, transition="screen_eligible", actor=SYSTEM)
    # noon in the program's timezone: outside quiet hours (21:00-08:00 New York)
    time_machine.move_to(datetime(2026, 11, 25, 17, 0, tzinfo=UTC))

    # when: the invitation is due and the dispatcher runs
    enrollment_transition(enrollment_id=enrollment.pk, transition="invite", actor=SYSTEM)
    step = enrollment.steps.get(step_key="invitation_message")
    message = Message.objects.get(step_instance_id=step.pk)
    assert message.template_key == "invitation"
    dispatch_due_messages()

    # then: the message reached "delivered" and the step completed via the message
    message.refresh_from_db()
    step.refresh_from_db()
    assert message.state == "delivered"
    assert step.state == StepState.COMPLETED
    assert step.completed_via == "message"
    assert OutboxEvent.objects.filter(
        event_type="participants.step.completed", sequence_key=f"enrollment:{enrollment.pk}"
    ).exists()
