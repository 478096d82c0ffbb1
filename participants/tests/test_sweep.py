"""The SLA sweep: overdue marking, one exception per step, auto-close."""

from datetime import timedelta

import time_machine
from django.utils import timezone

from integrations.models import OutboxEvent
from participants.models import StepState
from participants.services import sla_sweep, step_complete, step_skip
from participants.tasks import sla_sweep_task
from participants.tests.conftest import SYSTEM, drive, utc
from programs.models import AuditEvent, JobHeartbeat, OpsException
from programs.registries import registry


def test_sweep_marks_overdue_opens_one_item_and_emits(mini_enrollment):
    # given a referred enrollment whose 3-day screening step is past due
    step = mini_enrollment.steps.get()
    later = step.due_at + timedelta(minutes=1)

    # when the sweep runs
    result = sla_sweep(now=later)

    # then the step is overdue, with one open sla_breach item, audit and event
    step.refresh_from_db()
    assert step.state == StepState.OVERDUE
    assert result == {"overdue": 1, "exceptions_opened": 1, "batches": 1}
    item = OpsException.objects.get(kind="sla_breach")
    assert item.state == "open"
    assert item.dedup_key == f"sla_breach:step:{step.pk}"
    assert item.subject_type == "participants.stepinstance"
    assert item.program_id == mini_enrollment.program_id
    assert AuditEvent.objects.filter(action="step.overdue", object_id=str(step.pk)).exists()
    assert AuditEvent.objects.filter(action="exception.opened", object_id=str(item.pk)).exists()
    overdue = OutboxEvent.objects.get(event_type="participants.step.overdue")
    assert overdue.payload["step_id"] == step.pk
    assert overdue.sequence_key == f"enrollment:{mini_enrollment.pk}"
    mini_enrollment.refresh_from_db()
    assert overdue.sequence == mini_enrollment.event_sequence
    assert OutboxEvent.objects.filter(
        event_type="programs.exception.opened", payload__exception_id=item.pk
    ).exists()


def test_sweep_leaves_steps_not_yet_due(mini_enrollment):
    step = mini_enrollment.steps.get()
    assert sla_sweep(now=step.due_at - timedelta(seconds=1))["overdue"] == 0
    step.refresh_from_db()
    assert step.state == StepState.PENDING


def test_sweep_is_deduplicated_across_runs(mini_enrollment):
    step = mini_enrollment.steps.get()
    sla_sweep(now=step.due_at + timedelta(minutes=1))
    second = sla_sweep(now=step.due_at + timedelta(minutes=2))
    assert second["overdue"] == 0
    assert OpsException.objects.filter(kind="sla_breach").count() == 1


def test_existing_active_item_is_not_duplicated(mini_enrollment):
    # given an active sla_breach item for the step already (e.g. raised by hand)
    from programs.services import exception_raise

    step = mini_enrollment.steps.get()
    exception_raise(
        organization=mini_enrollment.organization,
        kind="sla_breach",
        title="raised by hand",
        dedup_key=f"sla_breach:step:{step.pk}",
        actor=SYSTEM,
    )

    # when the sweep marks the step
    result = sla_sweep(now=step.due_at + timedelta(minutes=1))

    # then the step is overdue but there is still one active item
    assert result["overdue"] == 1 and result["exceptions_opened"] == 0
    assert OpsException.objects.filter(kind="sla_breach", state="open").count() == 1


def test_late_completion_closes_the_item_audited(mini_enrollment, coordinator):
    step = mini_enrollment.steps.get()
    sla_sweep(now=step.due_at + timedelta(minutes=1))

    # when the overdue step is completed late
    step_complete(step_id=step.pk, actor=coordinator)

    # then its item is resolved automatically, and the audit says so
    item = OpsException.objects.get(kind="sla_breach")
    assert item.state == "resolved" and item.auto_resolved
    assert AuditEvent.objects.filter(
        action="exception.auto_resolved", object_id=str(item.pk)
    ).exists()
    assert OutboxEvent.objects.filter(
        event_type="participants.step.completed", payload__late=True
    ).exists()


def test_late_skip_closes_the_item_too(mini_enrollment, coordinator):
    step = mini_enrollment.steps.get()
    sla_sweep(now=step.due_at + timedelta(minutes=1))
    step_skip(step_id=step.pk, actor=coordinator, reason="screened by phone")
    assert OpsException.objects.get(kind="sla_breach").state == "resolved"


def test_sweep_in_small_batches_handles_many_steps(org, mini_program):
    from participants.services import enrollment_open, participant_upsert

    # given 7 enrollments with a due screening step each
    for i in range(7):
        p, _ = participant_upsert(organization=org, external_ref=f"r{i}", actor=SYSTEM)
        enrollment_open(participant=p, program=mini_program, actor=SYSTEM)

    # when swept in batches of 3
    result = sla_sweep(now=timezone.now() + timedelta(days=4), batch_size=3)

    # then all are overdue with one item each
    assert result == {"overdue": 7, "exceptions_opened": 7, "batches": 3}
    assert OpsException.objects.filter(kind="sla_breach").count() == 7


def test_paused_enrollment_steps_do_not_go_overdue(mini_enrollment):
    enrollment = drive(mini_enrollment, "paused")
    assert sla_sweep(now=timezone.now() + timedelta(days=30))["overdue"] == 0
    assert not enrollment.steps.filter(state=StepState.OVERDUE).exists()


def test_scheduled_task_with_time_travel_across_dst(participant, program):
    from participants.services import enrollment_open

    # given an enrollment opened Saturday 10:00 New York, before spring forward
    with time_machine.travel(utc(2024, 3, 9, 15), tick=False):
        enrollment, _ = enrollment_open(participant=participant, program=program, actor=SYSTEM)
    step = enrollment.steps.get(step_key="eligibility_review")

    # when the minute job runs at Tuesday 09:59 EDT, the step is not yet due
    with time_machine.travel(utc(2024, 3, 12, 13, 59), tick=False):
        assert sla_sweep_task()["overdue"] == 0
    # at 10:01 EDT it is overdue (a naive UTC+72h would wait until 11:00)
    with time_machine.travel(utc(2024, 3, 12, 14, 1), tick=False):
        assert sla_sweep_task()["overdue"] == 1
    step.refresh_from_db()
    assert step.state == StepState.OVERDUE
    assert JobHeartbeat.objects.get(name="participants.sla_sweep").last_ok


def test_sweep_is_registered_every_minute():
    job = registry.schedules["participants.sla_sweep"]
    assert job.func == "participants.tasks.sla_sweep_task" and job.minutes == 1
