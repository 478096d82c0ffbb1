"""R8: a hypothesis RuleBasedStateMachine drives transitions, partner events,
step actions and SLA sweeps (with a moving clock) on DPP enrollments.

Invariants after every step: every state is legal; every enrollment
transition has its audit row and its outbox event (same from/to, in order);
outbox sequences per enrollment are gapless; terminal enrollments have no
open steps; every overdue step has exactly one active sla_breach item.
"""

import itertools
from datetime import timedelta

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from integrations.models import OutboxEvent
from participants.models import (
    OPEN_STEP_STATES,
    TERMINAL_STATES,
    Enrollment,
    EnrollmentState,
    StepInstance,
    StepState,
)
from participants.services import (
    enrollment_allowed_transitions,
    enrollment_open,
    enrollment_transition,
    event_ingest,
    participant_upsert,
    sla_sweep,
    step_complete,
    step_skip,
)
from participants.services.common import ALL_TRANSITIONS, may_transition
from programs.actors import Actor
from programs.errors import PermissionDenied, TransitionNotAllowed
from programs.models import AuditEvent, OpsException

SYSTEM = Actor.system("hypothesis")
EVENT_TYPES = [
    "eligibility.screened",
    "consent.recorded",
    "device.shipped",
    "device.synced",
    "coaching.intro_completed",
    "coaching.session_attended",
    "pharmacy.refilled",  # nothing expects it
]


class EnrollmentMachine(RuleBasedStateMachine):
    org = program = users = None  # set by the test before running

    def __init__(self):
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.now = timezone.now()
        self.refs = []
        self.enrollment_ids = []
        for i in range(2):
            ref = f"hyp-{i}"
            participant, _ = participant_upsert(
                organization=self.org, external_ref=ref, actor=SYSTEM
            )
            enrollment, _ = enrollment_open(
                participant=participant, program=self.program, actor=SYSTEM
            )
            self.refs.append(ref)
            self.enrollment_ids.append(enrollment.pk)

    def teardown(self):
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    def _actor(self, who):
        return SYSTEM if who == "system" else self.users[who]

    @rule(
        index=st.integers(0, 1),
        name=st.sampled_from(ALL_TRANSITIONS),
        who=st.sampled_from(["system", "coordinator", "lead", "auditor"]),
        reason=st.sampled_from(["", "participant asked"]),
    )
    def transition(self, index, name, who, reason):
        enrollment = Enrollment.objects.get(pk=self.enrollment_ids[index])
        actor = self._actor(who)
        allowed = enrollment_allowed_transitions(enrollment)
        before = enrollment.state
        try:
            enrollment_transition(
                enrollment_id=enrollment.pk, transition=name, actor=actor, reason=reason
            )
        except PermissionDenied:
            assert not may_transition(actor, enrollment.organization_id, name)
        except TransitionNotAllowed as exc:
            assert name not in allowed
            assert exc.current_state == before
        except ValueError:
            assert name == "withdraw" and not reason
        else:
            assert name in allowed
            assert may_transition(actor, enrollment.organization_id, name)

    @rule(
        index=st.integers(0, 2),
        event_type=st.sampled_from(EVENT_TYPES),
        event_no=st.integers(0, 12),
        minutes_ago=st.integers(0, 60 * 24 * 10),
    )
    def partner_event(self, index, event_type, event_no, minutes_ago):
        ref = self.refs[index] if index < len(self.refs) else "unknown-ref"
        # The event arrives at the model's clock (which the sweeps move on),
        # so its occurred_at is never in Baton's future.
        with time_machine.travel(self.now, tick=False):
            result = event_ingest(
                organization=self.org,
                event_id=f"evt-{event_no}",  # small id space: duplicates happen
                event_type=event_type,
                external_ref=ref,
                occurred_at=self.now - timedelta(minutes=minutes_ago),
                data={},
                actor=SYSTEM,
            )
        if not result.created:
            assert result.matched_steps == [] and result.exception is None

    @rule(hours=st.integers(1, 24 * 8))
    def sweep(self, hours):
        self.now += timedelta(hours=hours)
        sla_sweep(now=self.now, batch_size=3)

    @precondition(lambda self: StepInstance.objects.filter(state__in=OPEN_STEP_STATES).exists())
    @rule(data=st.data(), skip=st.booleans())
    def act_on_step(self, data, skip):
        ids = list(
            StepInstance.objects.filter(state__in=OPEN_STEP_STATES)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        step_id = data.draw(st.sampled_from(ids))
        if skip:
            step_skip(step_id=step_id, actor=self.users["coordinator"], reason="handled offline")
        else:
            step_complete(step_id=step_id, actor=self.users["coordinator"])

    @rule(index=st.integers(0, 1))
    def reopen(self, index):
        enrollment = Enrollment.objects.get(pk=self.enrollment_ids[index])
        if enrollment.is_terminal:
            fresh, created = enrollment_open(
                participant=enrollment.participant, program=self.program, actor=SYSTEM
            )
            assert created
            self.enrollment_ids[index] = fresh.pk

    @invariant()
    def states_are_legal(self):
        states = set(Enrollment.objects.values_list("state", flat=True))
        assert states <= set(EnrollmentState.values)
        assert set(StepInstance.objects.values_list("state", flat=True)) <= set(StepState.values)

    @invariant()
    def every_transition_has_audit_and_outbox_event(self):
        for enrollment in Enrollment.objects.all():
            audits = list(
                AuditEvent.objects.filter(
                    object_type="participants.enrollment", object_id=str(enrollment.pk)
                )
                .order_by("created_at", "id")
                .values_list("from_state", "to_state")
            )
            events = list(
                OutboxEvent.objects.filter(
                    sequence_key=f"enrollment:{enrollment.pk}",
                    event_type__startswith="participants.enrollment.",
                )
                .order_by("sequence")
                .values_list("payload__from_state", "payload__state")
            )
            assert audits == events
            assert audits[-1][1] == enrollment.state
            # a transition changed the state each time; chained, with no gap
            for (_a, to_state), (from_state, _b) in itertools.pairwise(audits):
                assert to_state == from_state
            sequences = list(
                OutboxEvent.objects.filter(sequence_key=f"enrollment:{enrollment.pk}")
                .order_by("sequence")
                .values_list("sequence", flat=True)
            )
            assert sequences == list(range(1, enrollment.event_sequence + 1))

    @invariant()
    def terminal_enrollments_have_no_open_steps(self):
        assert not StepInstance.objects.filter(
            enrollment__state__in=TERMINAL_STATES, state__in=OPEN_STEP_STATES
        ).exists()

    @invariant()
    def each_overdue_step_has_one_active_item(self):
        for step in StepInstance.objects.filter(state=StepState.OVERDUE):
            active = OpsException.objects.filter(
                dedup_key=f"sla_breach:step:{step.pk}", state__in=["open", "claimed", "snoozed"]
            ).count()
            assert active == 1
        for step in StepInstance.objects.exclude(state=StepState.OVERDUE).exclude(overdue_at=None):
            assert not OpsException.objects.filter(
                dedup_key=f"sla_breach:step:{step.pk}", state="open"
            ).exists()


@pytest.mark.django_db
def test_enrollment_state_machine(program, coordinator, lead, auditor):
    EnrollmentMachine.org = program.organization
    EnrollmentMachine.program = program
    EnrollmentMachine.users = {"coordinator": coordinator, "lead": lead, "auditor": auditor}
    run_state_machine_as_test(
        EnrollmentMachine,
        settings=settings(
            max_examples=30,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
            database=None,
        ),
    )
