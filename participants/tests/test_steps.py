"""Step instantiation, due dates across DST, completion, skipping, auto-advance."""

from datetime import timedelta

import pytest
import time_machine

from integrations.models import OutboxEvent
from participants.models import StepInstance, StepState
from participants.services import (
    compute_due_at,
    enrollment_open,
    enrollment_transition,
    step_complete,
    step_complete_for_message,
    step_skip,
)
from participants.step_kinds import register_step_kind_handler, step_kind_handler
from participants.tests.conftest import SYSTEM, drive, utc
from programs.errors import PermissionDenied, TransitionNotAllowed
from programs.models import AuditEvent


def _to_onboarding(enrollment):
    for name in ("screen_eligible", "invite", "start_onboarding"):
        enrollment = enrollment_transition(
            enrollment_id=enrollment.pk, transition=name, actor=SYSTEM
        )
    return enrollment


def test_entering_a_state_instantiates_its_stage_steps(dpp_enrollment):
    # given a fresh DPP enrollment (referred): its screening step exists
    assert list(dpp_enrollment.steps.values_list("step_key", "state")) == [
        ("eligibility_review", "pending")
    ]

    # when it reaches onboarding
    enrollment = _to_onboarding(dpp_enrollment)

    # then the onboarding checklist is there, copied from the version
    onboarding = enrollment.steps.filter(stage_state="onboarding").order_by("id")
    assert [s.step_key for s in onboarding] == [
        "consent_recorded",
        "device_shipped",
        "first_device_sync",
        "coach_intro_call",
        "welcome_pack",
    ]
    welcome = onboarding.get(step_key="welcome_pack")
    assert welcome.required is False and welcome.kind == "message"
    assert onboarding.get(step_key="consent_recorded").severity == "high"
    # the earlier stages' open steps were closed as "stage left"
    assert enrollment.steps.get(step_key="eligibility_review").completed_via == "stage_left"
    assert enrollment.steps.get(step_key="invitation_message").state == StepState.SKIPPED


def test_every_created_step_records_its_side_effect(dpp_enrollment):
    # when the onboarding steps are created
    enrollment = _to_onboarding(dpp_enrollment)

    # then each step kind's default handler recorded an action request event
    requested = OutboxEvent.objects.filter(
        event_type="participants.step.action_requested",
        sequence_key=f"enrollment:{enrollment.pk}",
    )
    assert {e.payload["step_key"] for e in requested} == set(
        enrollment.steps.values_list("step_key", flat=True)
    )
    invitation = requested.get(payload__step_key="invitation_message")
    assert invitation.payload["kind"] == "message"
    assert invitation.payload["template"] == "invitation"


def test_registered_step_kind_handler_replaces_default(dpp_enrollment):
    calls = []
    default = step_kind_handler("partner_task")
    register_step_kind_handler("partner_task", lambda **kw: calls.append(kw["step"].step_key))
    try:
        _to_onboarding(dpp_enrollment)
    finally:
        register_step_kind_handler("partner_task", default)
    assert calls == ["device_shipped"]


def test_unknown_step_kind_handler_is_refused():
    with pytest.raises(ValueError, match="unknown step kind"):
        register_step_kind_handler("carrier_pigeon", lambda **kw: None)


def test_completing_all_required_steps_auto_advances_as_system(dpp_enrollment):
    # given an onboarding enrollment
    enrollment = _to_onboarding(dpp_enrollment)
    required = enrollment.steps.filter(stage_state="onboarding", required=True).order_by("id")

    # when all required steps but the last are done, it stays in onboarding
    for step in required[:3]:
        step_complete(step_id=step.pk, actor=SYSTEM)
    enrollment.refresh_from_db()
    assert enrollment.state == "onboarding"

    # when the last one is done (the optional welcome pack still pending)
    step_complete(step_id=required[3].pk, actor=SYSTEM)

    # then it advanced to active, audited with the system as actor
    enrollment.refresh_from_db()
    assert enrollment.state == "active"
    audit = AuditEvent.objects.get(action="enrollment.activate", object_id=str(enrollment.pk))
    assert audit.actor_kind == "system"
    assert audit.actor_label == "system:participants.auto_advance"
    assert OutboxEvent.objects.filter(
        event_type="participants.enrollment.activated", payload__enrollment_id=enrollment.pk
    ).exists()
    # the optional step closed with its stage; the active stage began
    assert enrollment.steps.get(step_key="welcome_pack").state == StepState.SKIPPED
    assert enrollment.steps.get(step_key="week1_session").state == StepState.PENDING


def test_skipping_counts_as_done_for_auto_advance(dpp_enrollment, coordinator):
    enrollment = _to_onboarding(dpp_enrollment)
    for step in enrollment.steps.filter(stage_state="onboarding", required=True):
        step_skip(step_id=step.pk, actor=coordinator, reason="done offline")
    enrollment.refresh_from_db()
    assert enrollment.state == "active"


def test_step_complete_is_idempotent(mini_enrollment, coordinator):
    step = mini_enrollment.steps.get()
    first = step_complete(step_id=step.pk, actor=coordinator)
    audits = AuditEvent.objects.count()
    again = step_complete(step_id=step.pk, actor=coordinator)
    assert first.state == again.state == StepState.COMPLETED
    assert again.completed_via == "coordinator"
    assert again.completed_by == coordinator.get_username()
    assert AuditEvent.objects.count() == audits


def test_skipped_step_cannot_be_completed(mini_enrollment, coordinator):
    step = mini_enrollment.steps.get()
    step_skip(step_id=step.pk, actor=coordinator, reason="not needed")
    with pytest.raises(TransitionNotAllowed, match="it is skipped"):
        step_complete(step_id=step.pk, actor=coordinator)


def test_skip_needs_reason_and_auditors_may_not_act(mini_enrollment, auditor):
    step = mini_enrollment.steps.get()
    with pytest.raises(ValueError, match="reason"):
        step_skip(step_id=step.pk, actor=SYSTEM, reason="")
    with pytest.raises(PermissionDenied):
        step_complete(step_id=step.pk, actor=auditor)
    step.refresh_from_db()
    assert step.state == StepState.PENDING


def test_message_step_completes_when_its_message_is_delivered(dpp_enrollment):
    enrollment = enrollment_transition(
        enrollment_id=dpp_enrollment.pk, transition="screen_eligible", actor=SYSTEM
    )
    enrollment = enrollment_transition(
        enrollment_id=enrollment.pk, transition="invite", actor=SYSTEM
    )
    step = enrollment.steps.get(step_key="invitation_message")  # complete_on: delivered

    # sent is not enough
    assert step_complete_for_message(step_id=step.pk, status="sent").state == StepState.PENDING
    # delivered completes it, via message
    done = step_complete_for_message(step_id=step.pk, status="delivered", message_ref="m1")
    assert done.state == StepState.COMPLETED
    assert done.completed_via == "message"


# --- due dates in the program timezone ------------------------------------------


@pytest.mark.parametrize(
    ("start", "duration", "expected"),
    [
        # America/New_York springs forward on 2024-03-10: P3D keeps 10:00 local.
        (utc(2024, 3, 9, 15), "P3D", utc(2024, 3, 12, 14)),
        # PT72H is elapsed time: one wall-clock hour later than P3D.
        (utc(2024, 3, 9, 15), "PT72H", utc(2024, 3, 12, 15)),
        # Falls back on 2024-11-03: P1W keeps 10:00 local (25 h longer than it looks).
        (utc(2024, 11, 2, 14), "P1W", utc(2024, 11, 9, 15)),
        (utc(2024, 11, 2, 14), "P1DT4H", utc(2024, 11, 3, 19)),
        # No change in sight: plain arithmetic.
        (utc(2024, 6, 1, 12), "P2D", utc(2024, 6, 3, 12)),
    ],
)
def test_compute_due_at_counts_days_on_the_local_wall_clock(start, duration, expected):
    assert compute_due_at(start, duration, "America/New_York") == expected


def test_due_dates_across_spring_forward_with_time_travel(participant, program):
    # given the clock at Saturday 2024-03-09 10:00 in New York (EST, UTC-5)
    with time_machine.travel(utc(2024, 3, 9, 15), tick=False):
        # when an enrollment opens in the DPP (timezone America/New_York)
        enrollment, _ = enrollment_open(participant=participant, program=program, actor=SYSTEM)

    # then the 3-day screening step is due Tuesday 10:00 New York time (EDT, UTC-4)
    step = enrollment.steps.get(step_key="eligibility_review")
    assert step.due_at == utc(2024, 3, 12, 14)


def test_due_dates_across_fall_back_with_time_travel(participant, program):
    with time_machine.travel(utc(2024, 11, 2, 14), tick=False):  # 10:00 EDT
        enrollment, _ = enrollment_open(participant=participant, program=program, actor=SYSTEM)
    step = enrollment.steps.get(step_key="eligibility_review")
    assert step.due_at == utc(2024, 11, 5, 15)  # 10:00 EST


def test_pause_stops_step_clocks_and_resume_restarts_them(mini_enrollment):
    # given an active enrollment whose 4-hour session step started at 12:00
    with time_machine.travel(utc(2024, 6, 1, 12), tick=False):
        enrollment = drive(mini_enrollment, "active")
    step = enrollment.steps.get(step_key="session")
    assert step.due_at == utc(2024, 6, 1, 16)

    # when paused at 13:00 and resumed at 20:00
    with time_machine.travel(utc(2024, 6, 1, 13), tick=False):
        enrollment_transition(enrollment_id=enrollment.pk, transition="pause", actor=SYSTEM)
    step.refresh_from_db()
    assert step.due_at is None and step.paused_remaining == timedelta(hours=3)
    with time_machine.travel(utc(2024, 6, 1, 20), tick=False):
        enrollment_transition(enrollment_id=enrollment.pk, transition="resume", actor=SYSTEM)

    # then the step keeps the three hours it had left
    step.refresh_from_db()
    assert step.due_at == utc(2024, 6, 1, 23)
    assert StepInstance.objects.filter(enrollment=enrollment, step_key="session").count() == 1
