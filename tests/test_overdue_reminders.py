"""Cross-app flow: a step whose definition asks for a reminder gets one
reminder message when it goes overdue (the SLA sweep job), once."""

import logging
from datetime import UTC, datetime, timedelta

import pytest

from messaging.management.commands.load_templates import load_templates
from messaging.models import Message
from participants.models import StepState
from participants.services import (
    enrollment_open,
    enrollment_transition,
    participant_upsert,
    sla_sweep,
)
from participants.services import reminders as reminders_module
from participants.tasks import sla_sweep_task
from programs.actors import Actor

SYSTEM = Actor.system("test")
INVITED_AT = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)  # noon in New York


def _invited(program, ref):
    participant, _ = participant_upsert(
        organization=program.organization, external_ref=ref, actor=SYSTEM
    )
    enrollment, _ = enrollment_open(participant=participant, program=program, actor=SYSTEM)
    enrollment_transition(enrollment_id=enrollment.pk, transition="screen_eligible", actor=SYSTEM)
    enrollment_transition(enrollment_id=enrollment.pk, transition="invite", actor=SYSTEM)
    return enrollment.steps.get(step_key="invitation_message")


@pytest.mark.django_db
def test_an_overdue_invitation_gets_exactly_one_reminder(program, time_machine):
    # given: the DPP invitation step (due after 4 h, reminder
    # "invitation_reminder"), whose message was never delivered
    load_templates(program=program, actor=SYSTEM)
    time_machine.move_to(INVITED_AT)
    step = _invited(program, "EHR-REMIND-1")
    # when: 5 hours later the sweep job runs, twice
    time_machine.move_to(INVITED_AT + timedelta(hours=5))
    first = sla_sweep_task()
    second = sla_sweep_task()
    # then: the step is overdue and has one reminder, scheduled through
    # messaging with the reminder template, next to the original invitation
    step.refresh_from_db()
    assert step.state == StepState.OVERDUE
    messages = Message.objects.filter(step_instance_id=step.pk).order_by("pk")
    assert [(m.kind, m.template_key) for m in messages] == [
        ("step", "invitation"),
        ("reminder", "invitation_reminder"),
    ]
    assert messages[1].state == "scheduled"
    assert first["reminders"] == {"reminders": 1, "steps": 1, "missing_template": 0}
    assert second["reminders"]["reminders"] == 0  # never twice for one step


@pytest.mark.django_db
def test_a_step_not_yet_overdue_gets_no_reminder(program, time_machine):
    load_templates(program=program, actor=SYSTEM)
    time_machine.move_to(INVITED_AT)
    step = _invited(program, "EHR-REMIND-2")
    time_machine.move_to(INVITED_AT + timedelta(hours=3))
    assert sla_sweep_task()["reminders"]["reminders"] == 0
    assert not Message.objects.filter(step_instance_id=step.pk, kind="reminder").exists()


@pytest.mark.django_db
def test_a_missing_reminder_template_is_logged_and_does_not_fail_the_sweep(
    program, time_machine, monkeypatch, caplog
):
    # given: two overdue invitations; the definition is read as asking for a
    # reminder template that was never published, for this step only
    load_templates(program=program, actor=SYSTEM)
    time_machine.move_to(INVITED_AT)
    steps = [_invited(program, f"EHR-REMIND-{n}") for n in (3, 4)]
    real = reminders_module.reminder_steps()
    version_id = steps[0].enrollment.program_version_id
    broken = {**real, (version_id, "invitation_message"): "no_such_template"}
    monkeypatch.setattr(reminders_module, "reminder_steps", lambda: broken)
    time_machine.move_to(INVITED_AT + timedelta(hours=5))
    # when
    with caplog.at_level(logging.WARNING, logger="participants.services.reminders"):
        result = sla_sweep_task()
    # then: no crash, no reminder, a warning naming the template; the sweep
    # itself did its work
    assert result["overdue"] == 2
    assert result["reminders"] == {"reminders": 0, "steps": 0, "missing_template": 2}
    assert "no_such_template" in caplog.text
    assert not Message.objects.filter(kind="reminder").exists()


@pytest.mark.django_db
def test_a_step_overdue_for_more_than_a_day_gets_no_late_reminder(program, time_machine):
    # given: the step went overdue while the job did not run for two days
    load_templates(program=program, actor=SYSTEM)
    time_machine.move_to(INVITED_AT)
    step = _invited(program, "EHR-REMIND-5")
    time_machine.move_to(INVITED_AT + timedelta(hours=5))
    sla_sweep()
    time_machine.move_to(INVITED_AT + timedelta(days=2, hours=5))
    # when
    result = sla_sweep_task()
    # then: no reminder two days late
    assert result["reminders"]["reminders"] == 0
    assert not Message.objects.filter(step_instance_id=step.pk, kind="reminder").exists()
