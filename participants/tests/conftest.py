"""Fixtures of the participants engine tests."""

import copy
from datetime import UTC, datetime

import pytest

from participants.models import EnrollmentState, StepState
from participants.services import (
    enrollment_open,
    enrollment_transition,
    participant_upsert,
    step_complete,
)
from programs.actors import Actor

SYSTEM = Actor.system("test")

# A small definition without auto-advance, so every transition can be driven by hand.
MINI = {
    "program": {"slug": "mini", "name": "Mini program", "timezone": "America/New_York"},
    "stages": [
        {
            "key": "screening",
            "state": "referred",
            "steps": [
                {
                    "key": "screen",
                    "title": "Screen",
                    "kind": "wait_event",
                    "completes_on": "eligibility.screened",
                    "due_after": "P3D",
                }
            ],
        },
        {
            "key": "onboarding",
            "state": "onboarding",
            "steps": [{"key": "consent", "title": "Consent", "kind": "manual", "due_after": "P1D"}],
        },
        {
            "key": "active",
            "state": "active",
            "steps": [
                {
                    "key": "session",
                    "title": "Session",
                    "kind": "wait_event",
                    "completes_on": "coaching.session_attended",
                    "due_after": "PT4H",
                    "escalation": {"severity": "high"},
                }
            ],
        },
    ],
}

# The path from referred to each state (system actor), finishing stages as needed.
PATHS = {
    "referred": [],
    "eligible": ["screen_eligible"],
    "ineligible": ["screen_ineligible"],
    "invited": ["screen_eligible", "invite"],
    "onboarding": ["screen_eligible", "invite", "start_onboarding"],
    "active": ["screen_eligible", "invite", "start_onboarding", "activate"],
    "paused": ["screen_eligible", "invite", "start_onboarding", "activate", "pause"],
    "completed": ["screen_eligible", "invite", "start_onboarding", "activate", "complete"],
    "withdrawn": ["withdraw"],
}


def load_program(org, document):
    from programs.services import program_activate, program_load_definition

    version, _ = program_load_definition(organization=org, document=document, actor=SYSTEM)
    return program_activate(program_id=version.program_id, actor=SYSTEM)


@pytest.fixture
def mini_program(org):
    return load_program(org, copy.deepcopy(MINI))


@pytest.fixture
def participant(org):
    return participant_upsert(organization=org, external_ref="ref-001", actor=SYSTEM)[0]


@pytest.fixture
def mini_enrollment(participant, mini_program):
    return enrollment_open(participant=participant, program=mini_program, actor=SYSTEM)[0]


@pytest.fixture
def dpp_enrollment(participant, program):
    return enrollment_open(participant=participant, program=program, actor=SYSTEM)[0]


def finish_stage(enrollment):
    """Complete every open required step of the enrollment's current stage."""
    for step in enrollment.steps.filter(
        stage_state=enrollment.state, required=True, state__in=[StepState.PENDING, "overdue"]
    ):
        step_complete(step_id=step.pk, actor=SYSTEM)


def drive(enrollment, state):
    """Move a MINI enrollment from referred to `state` with the system actor."""
    for name in PATHS[state]:
        enrollment.refresh_from_db()
        if name in ("activate", "complete"):
            finish_stage(enrollment)
        enrollment = enrollment_transition(
            enrollment_id=enrollment.pk, transition=name, actor=SYSTEM, reason="test path"
        )
    enrollment.refresh_from_db()
    assert enrollment.state == state
    return enrollment


def utc(*args):
    return datetime(*args, tzinfo=UTC)


__all__ = ["MINI", "PATHS", "SYSTEM", "EnrollmentState", "drive", "finish_stage", "utc"]
