"""Every allowed and every rejected enrollment transition, roles, audit and events."""

import pytest

from integrations.models import OutboxEvent
from participants.models import TERMINAL_STATES, Enrollment, EnrollmentState, StepState
from participants.services import (
    enrollment_allowed_transitions,
    enrollment_open,
    enrollment_transition,
)
from participants.services.common import ALL_TRANSITIONS
from participants.tests.conftest import PATHS, SYSTEM, drive, finish_stage
from programs.actors import Actor
from programs.errors import PermissionDenied, TransitionNotAllowed
from programs.models import AuditEvent
from programs.services import program_pause

ALLOWED = {
    ("referred", "screen_eligible"): "eligible",
    ("referred", "screen_ineligible"): "ineligible",
    ("eligible", "invite"): "invited",
    ("invited", "start_onboarding"): "onboarding",
    ("onboarding", "activate"): "active",
    ("active", "pause"): "paused",
    ("paused", "resume"): "active",
    ("active", "complete"): "completed",
    **{
        (state, "withdraw"): "withdrawn"
        for state in EnrollmentState.values
        if state not in TERMINAL_STATES
    },
}
ALL_PAIRS = [(s, t) for s in EnrollmentState.values for t in ALL_TRANSITIONS]


@pytest.mark.parametrize(("state", "transition"), [p for p in ALL_PAIRS if p in ALLOWED])
def test_allowed_transition_moves_state_with_audit_and_event(mini_enrollment, state, transition):
    # given an enrollment in `state` whose stage is done
    enrollment = drive(mini_enrollment, state)
    finish_stage(enrollment)
    audits_before = AuditEvent.objects.filter(object_type="participants.enrollment").count()

    # when the transition runs
    result = enrollment_transition(
        enrollment_id=enrollment.pk, transition=transition, actor=SYSTEM, reason="because"
    )

    # then the state moved, with one audit row and one sequenced outbox event
    result.refresh_from_db()
    assert result.state == ALLOWED[(state, transition)]
    audit = AuditEvent.objects.filter(
        object_type="participants.enrollment", object_id=str(enrollment.pk)
    ).first()
    assert audit.action == f"enrollment.{transition}"
    assert (audit.from_state, audit.to_state) == (state, result.state)
    assert audit.reason == "because"
    assert AuditEvent.objects.filter(object_type="participants.enrollment").count() == (
        audits_before + 1
    )
    event = OutboxEvent.objects.filter(sequence_key=f"enrollment:{enrollment.pk}").last()
    assert event.event_type.startswith("participants.enrollment.") or event.event_type.startswith(
        "participants.step."
    )
    transition_event = (
        OutboxEvent.objects.filter(
            sequence_key=f"enrollment:{enrollment.pk}",
            event_type__startswith="participants.enrollment.",
        )
        .order_by("sequence")
        .last()
    )
    assert transition_event.payload["state"] == result.state
    assert transition_event.payload["from_state"] == state


@pytest.mark.parametrize(("state", "transition"), [p for p in ALL_PAIRS if p not in ALLOWED])
def test_rejected_transition_names_state_and_allowed(mini_enrollment, state, transition):
    # given an enrollment in `state`
    enrollment = drive(mini_enrollment, state)
    audits_before = AuditEvent.objects.count()
    events_before = OutboxEvent.objects.count()

    # when a transition not allowed from it runs
    with pytest.raises(TransitionNotAllowed) as caught:
        enrollment_transition(
            enrollment_id=enrollment.pk, transition=transition, actor=SYSTEM, reason="x"
        )

    # then the error names the state and what is allowed; nothing changed
    error = caught.value
    assert error.current_state == state
    assert f"it is {state}" in str(error)
    expected_allowed = sorted(t for (s, t) in ALLOWED if s == state)
    if state == "onboarding":
        expected_allowed.remove("activate")  # its condition (stage done) does not hold yet
    if state == "active":
        expected_allowed.remove("complete")
    assert error.allowed == expected_allowed
    if state in TERMINAL_STATES:
        assert "none (terminal state)" in str(error)
    enrollment.refresh_from_db()
    assert enrollment.state == state
    assert AuditEvent.objects.count() == audits_before
    assert OutboxEvent.objects.count() == events_before


def test_activate_refused_until_required_steps_done(mini_enrollment):
    # given an onboarding enrollment with its consent step pending
    enrollment = drive(mini_enrollment, "onboarding")

    # when activating by hand / then it is refused, naming the state
    with pytest.raises(TransitionNotAllowed, match="it is onboarding"):
        enrollment_transition(enrollment_id=enrollment.pk, transition="activate", actor=SYSTEM)
    assert enrollment_allowed_transitions(enrollment) == ["withdraw"]

    # when the step is done, activation is allowed
    finish_stage(enrollment)
    assert enrollment_allowed_transitions(enrollment) == ["activate", "withdraw"]


def test_withdraw_needs_a_reason(mini_enrollment):
    with pytest.raises(ValueError, match="reason is required"):
        enrollment_transition(
            enrollment_id=mini_enrollment.pk, transition="withdraw", actor=SYSTEM, reason="  "
        )
    mini_enrollment.refresh_from_db()
    assert mini_enrollment.state == "referred"


def test_unknown_transition_is_a_clear_error(mini_enrollment):
    with pytest.raises(ValueError, match="unknown transition 'teleport'"):
        enrollment_transition(enrollment_id=mini_enrollment.pk, transition="teleport", actor=SYSTEM)


def test_paused_program_stops_forward_moves_but_not_withdraw(mini_enrollment, mini_program):
    # given the program is paused
    program_pause(program_id=mini_program.pk, actor=SYSTEM)

    # then screening is refused and withdrawing still works
    with pytest.raises(TransitionNotAllowed):
        enrollment_transition(
            enrollment_id=mini_enrollment.pk, transition="screen_eligible", actor=SYSTEM
        )
    enrollment = enrollment_transition(
        enrollment_id=mini_enrollment.pk, transition="withdraw", actor=SYSTEM, reason="moved"
    )
    assert enrollment.state == "withdrawn"


def test_auditor_may_not_transition(mini_enrollment, auditor):
    with pytest.raises(PermissionDenied, match="auditor"):
        enrollment_transition(
            enrollment_id=mini_enrollment.pk, transition="screen_eligible", actor=auditor
        )
    mini_enrollment.refresh_from_db()
    assert mini_enrollment.state == "referred"
    assert enrollment_allowed_transitions(mini_enrollment, auditor) == []


def test_user_of_another_organization_may_not_transition(mini_enrollment, other_coordinator):
    with pytest.raises(PermissionDenied, match="not a member"):
        enrollment_transition(
            enrollment_id=mini_enrollment.pk, transition="screen_eligible", actor=other_coordinator
        )


def test_coordinator_may_not_complete_but_lead_may(mini_enrollment, coordinator, lead):
    # given an active enrollment whose stage is done
    enrollment = drive(mini_enrollment, "active")
    finish_stage(enrollment)

    # then a coordinator cannot complete it, and does not see the button
    assert "complete" not in enrollment_allowed_transitions(enrollment, coordinator)
    with pytest.raises(PermissionDenied):
        enrollment_transition(enrollment_id=enrollment.pk, transition="complete", actor=coordinator)

    # and a lead can; the audit row names the lead
    assert "complete" in enrollment_allowed_transitions(enrollment, lead)
    enrollment_transition(enrollment_id=enrollment.pk, transition="complete", actor=lead)
    audit = AuditEvent.objects.filter(action="enrollment.complete").get()
    assert audit.actor_label == lead.get_username()


def test_coordinator_runs_the_day_to_day_transitions(mini_enrollment, coordinator):
    enrollment = enrollment_transition(
        enrollment_id=mini_enrollment.pk, transition="screen_eligible", actor=coordinator
    )
    assert enrollment.state == "eligible"


def test_api_client_runs_partner_facing_transitions_only(mini_enrollment):
    api = Actor(kind=Actor.API_CLIENT, id="7", label="api:ehr")
    enrollment = drive(mini_enrollment, "onboarding")
    finish_stage(enrollment)
    assert "activate" not in enrollment_allowed_transitions(enrollment, api)
    with pytest.raises(PermissionDenied):
        enrollment_transition(enrollment_id=enrollment.pk, transition="activate", actor=api)
    enrollment_transition(enrollment_id=enrollment.pk, transition="withdraw", actor=api, reason="r")


def test_terminal_transition_skips_open_steps(mini_enrollment):
    # given a referred enrollment with its screening step pending
    step = mini_enrollment.steps.get()
    assert step.state == StepState.PENDING

    # when withdrawn
    enrollment_transition(
        enrollment_id=mini_enrollment.pk, transition="withdraw", actor=SYSTEM, reason="moved away"
    )

    # then the step is skipped (stage left), audited and announced
    step.refresh_from_db()
    assert step.state == StepState.SKIPPED
    assert step.completed_via == "stage_left"
    assert AuditEvent.objects.filter(action="step.skipped", object_id=str(step.pk)).exists()
    assert OutboxEvent.objects.filter(
        event_type="participants.step.skipped", payload__step_id=step.pk
    ).exists()


def test_outbox_sequence_is_gapless_per_enrollment(mini_enrollment):
    enrollment = drive(mini_enrollment, "completed")
    sequences = list(
        OutboxEvent.objects.filter(sequence_key=f"enrollment:{enrollment.pk}")
        .order_by("sequence")
        .values_list("sequence", flat=True)
    )
    assert sequences == list(range(1, len(sequences) + 1))
    assert Enrollment.objects.get(pk=enrollment.pk).event_sequence == len(sequences)


def test_open_returns_existing_non_terminal_enrollment(participant, mini_program):
    first, created = enrollment_open(participant=participant, program=mini_program, actor=SYSTEM)
    again, created_again = enrollment_open(
        participant=participant, program=mini_program, actor=SYSTEM
    )
    assert created and not created_again
    assert again.pk == first.pk
    assert first.state == "referred"
    assert [s.step_key for s in first.steps.all()] == ["screen"]


def test_open_after_terminal_enrollment_starts_a_new_one(participant, mini_program):
    first, _ = enrollment_open(participant=participant, program=mini_program, actor=SYSTEM)
    enrollment_transition(enrollment_id=first.pk, transition="withdraw", actor=SYSTEM, reason="r")
    second, created = enrollment_open(participant=participant, program=mini_program, actor=SYSTEM)
    assert created and second.pk != first.pk


def test_open_refused_when_program_paused(participant, mini_program):
    from participants.errors import EnrollmentNotOpen

    program_pause(program_id=mini_program.pk, actor=SYSTEM)
    with pytest.raises(EnrollmentNotOpen, match="paused"):
        enrollment_open(participant=participant, program=mini_program, actor=SYSTEM)


def test_paths_cover_every_state():
    assert set(PATHS) == set(EnrollmentState.values)
