"""Participants, their enrollments in programs, the step checklist of each
enrollment, and the partner events that drive it.

PHI stays out: a participant is an opaque `external_ref` into the customer's
own system plus operational settings. There are deliberately no fields for
names, contact details, birth dates, addresses or other identifiers
(participants/tests/test_models.py fails if one appears).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from programs.models import TIMEZONE_CHOICES, Organization, Program, ProgramVersion


class Participant(models.Model):
    """A person in a program, known to Baton only by an opaque reference."""

    # No index of its own: uniq_participant_ref (organization, external_ref)
    # leads with it, so this one only cost an entry per insert, and on a
    # table whose statistics lagged a bulk import the planner preferred it
    # for the reference lookup every partner event starts with (every
    # participant of the organization read, then filtered by reference).
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="participants", db_index=False
    )
    external_ref = models.CharField(
        max_length=200,
        help_text="Opaque reference into the customer's own system (never a name or MRN).",
    )
    source_system = models.CharField(
        max_length=100, blank=True, help_text="The system the reference belongs to, e.g. 'ehr'."
    )
    timezone = models.CharField(
        max_length=64,
        choices=TIMEZONE_CHOICES,
        blank=True,
        help_text="Participant's timezone; blank means the program's.",
    )
    locale = models.CharField(max_length=20, blank=True, help_text="e.g. en-US, es-US")
    tags = models.JSONField(default=list, blank=True, help_text="Operational labels, no PHI.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization", "external_ref"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "external_ref"], name="uniq_participant_ref"
            )
        ]

    def __str__(self):
        return self.external_ref


class EnrollmentState(models.TextChoices):
    REFERRED = "referred", "Referred"
    ELIGIBLE = "eligible", "Eligible"
    INELIGIBLE = "ineligible", "Ineligible"
    INVITED = "invited", "Invited"
    ONBOARDING = "onboarding", "Onboarding"
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    WITHDRAWN = "withdrawn", "Withdrawn"


S = EnrollmentState
TERMINAL_STATES = (S.INELIGIBLE, S.COMPLETED, S.WITHDRAWN)
NON_TERMINAL_STATES = tuple(s for s in S.values if s not in TERMINAL_STATES)

# Transition name -> past tense used in audit actions and event types.
TRANSITION_PAST = {
    "screen_eligible": "screened_eligible",
    "screen_ineligible": "screened_ineligible",
    "invite": "invited",
    "start_onboarding": "onboarding_started",
    "activate": "activated",
    "pause": "paused",
    "resume": "resumed",
    "complete": "completed",
    "withdraw": "withdrawn",
}


class StepState(models.TextChoices):
    PENDING = "pending", "Pending"
    COMPLETED = "completed", "Completed"
    SKIPPED = "skipped", "Skipped"
    OVERDUE = "overdue", "Overdue"


OPEN_STEP_STATES = (StepState.PENDING, StepState.OVERDUE)
DONE_STEP_STATES = (StepState.COMPLETED, StepState.SKIPPED)


# --- transition conditions (pure reads; no I/O beyond the database) ----------


def program_running(enrollment) -> bool:
    """Forward moves need the program active (a paused or retired program
    stops journeys from advancing; pausing, completing and withdrawing stay
    possible)."""
    return enrollment.program.state == "active"


def current_stage_done(enrollment) -> bool:
    """Every required step of the current state's stage is completed or skipped."""
    return not enrollment.steps.filter(
        stage_state=enrollment.state, required=True, state__in=OPEN_STEP_STATES
    ).exists()


class Enrollment(ConcurrentTransitionMixin, models.Model):
    """One participant's journey through one program version.

    The state changes only through `participants.services.enrollment_transition`
    (which locks the row, checks conditions and role, audits and writes the
    outbox event). Transition methods here change fields in memory only.
    """

    organization = models.ForeignKey(
        Organization,
        on_delete=models.PROTECT,
        related_name="enrollments",
        help_text="Denormalised from the participant for scoping.",
        db_index=False,  # leads the (organization, program, state) index below
    )
    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="enrollments"
    )
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="enrollments")
    program_version = models.ForeignKey(
        ProgramVersion,
        on_delete=models.PROTECT,
        related_name="enrollments",
        help_text="The definition this journey follows; newer versions never change it.",
    )
    state = FSMField(default=S.REFERRED, choices=S.choices, protected=True, db_index=True)
    state_changed_at = models.DateTimeField(default=timezone.now, db_index=True)
    state_reason = models.TextField(blank=True, help_text="Reason given for the last change.")
    event_sequence = models.PositiveIntegerField(
        default=0, help_text="Last outbox sequence used for this enrollment's events."
    )
    last_event_at = models.DateTimeField(
        null=True, blank=True, help_text="Latest occurred_at of a partner event applied."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "program"],
                condition=Q(state__in=list(NON_TERMINAL_STATES)),
                name="uniq_open_enrollment",
            )
        ]
        indexes = [models.Index(fields=["organization", "program", "state"])]

    def __str__(self):
        return f"{self.participant} in {self.program.name} ({self.get_state_display().lower()})"

    @property
    def sequence_key(self) -> str:
        return f"enrollment:{self.pk}"

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    # Transitions: in memory only. Conditions are documented in docs/participants.md.
    @transition(field=state, source=S.REFERRED, target=S.ELIGIBLE, conditions=[program_running])
    def screen_eligible(self):
        """The referral passed screening."""

    @transition(field=state, source=S.REFERRED, target=S.INELIGIBLE, conditions=[program_running])
    def screen_ineligible(self):
        """The referral failed screening; terminal."""

    @transition(field=state, source=S.ELIGIBLE, target=S.INVITED, conditions=[program_running])
    def invite(self):
        """Invite the participant to join."""

    @transition(field=state, source=S.INVITED, target=S.ONBOARDING, conditions=[program_running])
    def start_onboarding(self):
        """The participant accepted; the onboarding checklist starts."""

    @transition(
        field=state,
        source=S.ONBOARDING,
        target=S.ACTIVE,
        conditions=[program_running, current_stage_done],
    )
    def activate(self):
        """Onboarding checklist done (required steps completed or skipped)."""

    @transition(field=state, source=S.ACTIVE, target=S.PAUSED)
    def pause(self):
        """Hold the journey; step timers stop until resumed."""

    @transition(field=state, source=S.PAUSED, target=S.ACTIVE, conditions=[program_running])
    def resume(self):
        """Continue after a pause; step timers restart with the time they had left."""

    @transition(field=state, source=S.ACTIVE, target=S.COMPLETED, conditions=[current_stage_done])
    def complete(self):
        """The program is finished; terminal."""

    @transition(field=state, source=list(NON_TERMINAL_STATES), target=S.WITHDRAWN)
    def withdraw(self):
        """Leave the program from any non-terminal state (reason required); terminal."""


class StepInstance(models.Model):
    """One step of an enrollment's checklist, copied from its program version
    when the enrollment entered the step's stage.

    Its state changes only through participants.services (step_complete,
    step_skip, the SLA sweep). Kept as plain fields (no FSM) so the sweep can
    mark thousands set-based; the services enforce the allowed moves.
    """

    # no index of its own: uniq_step_instance (enrollment, step_key) leads with it
    enrollment = models.ForeignKey(
        Enrollment, on_delete=models.CASCADE, related_name="steps", db_index=False
    )
    stage_key = models.CharField(max_length=63)
    stage_state = models.CharField(
        max_length=20, choices=EnrollmentState.choices, help_text="State the stage belongs to."
    )
    step_key = models.CharField(max_length=63)
    title = models.CharField(max_length=200)
    kind = models.CharField(max_length=20)
    required = models.BooleanField(default=True)
    completes_on = models.CharField(
        max_length=100, blank=True, help_text="Partner event type that completes this step."
    )
    state = models.CharField(
        max_length=10, choices=StepState.choices, default=StepState.PENDING, db_index=False
    )
    due_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Computed from due_after in the program timezone; empty while paused.",
    )
    paused_remaining = models.DurationField(
        null=True, blank=True, help_text="Time left on the clock when the enrollment paused."
    )
    severity = models.CharField(max_length=10, default="medium")
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    completed_via = models.CharField(
        max_length=20, blank=True, help_text="event, coordinator, message, skip or stage_left."
    )
    completed_by = models.CharField(max_length=200, blank=True)
    completed_by_event = models.ForeignKey(
        "ParticipantEvent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    overdue_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["enrollment", "id"]
        constraints = [
            models.UniqueConstraint(fields=["enrollment", "step_key"], name="uniq_step_instance")
        ]
        indexes = [
            # The SLA sweep reads only pending rows with a due date.
            models.Index(
                fields=["due_at"],
                condition=Q(state="pending", due_at__isnull=False),
                name="step_pending_due_idx",
            ),
            models.Index(fields=["enrollment", "state"]),
        ]

    def __str__(self):
        return f"{self.title} ({self.state})"

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STEP_STATES

    @property
    def sla_dedup_key(self) -> str:
        return f"sla_breach:step:{self.pk}"


class EventDisposition(models.TextChoices):
    MATCHED = "matched", "Completed one or more steps"
    DEFERRED = "deferred", "Expected by a later stage; applied when it is entered"
    REDUNDANT = "redundant", "Its steps were already done"
    UNMATCHED = "unmatched", "No step expects it (exception raised)"
    UNKNOWN_PARTICIPANT = "unknown_participant", "No participant with this reference"


class ParticipantEvent(models.Model):
    """A partner event about a participant, stored whatever happens to it."""

    # No database-level foreign key, as on integrations' OutboxEvent (why: there).
    # Neither it nor participant has an index of its own: the unique event id
    # and the indexes in Meta lead with them (one fewer index write per event).
    organization = models.ForeignKey(
        Organization,
        on_delete=models.PROTECT,
        related_name="participant_events",
        db_constraint=False,
        db_index=False,
    )
    event_id = models.CharField(max_length=200, help_text="The sender's id; dedup per org.")
    event_type = models.CharField(max_length=100, db_index=True)
    external_ref = models.CharField(max_length=200)
    participant = models.ForeignKey(
        Participant,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="events",
        db_index=False,
    )
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    data = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=100, blank=True)
    matched = models.BooleanField(default=False)
    disposition = models.CharField(
        max_length=20, choices=EventDisposition.choices, default=EventDisposition.UNMATCHED
    )
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "event_id"], name="uniq_participant_event_id"
            )
        ]
        indexes = [
            models.Index(fields=["participant", "event_type", "disposition"]),
            models.Index(fields=["organization", "external_ref"]),
            # The participant timeline pages a participant's events by time.
            models.Index(fields=["participant", "occurred_at"], name="pevent_timeline_idx"),
        ]

    def __str__(self):
        return f"{self.event_type} {self.event_id}"


class ProgramMetricsSnapshot(models.Model):
    """One program's strain metrics for one UTC day, written by the daily
    `participants.metrics_snapshot` job (participants.services.metrics).

    The dashboard reads its history from here instead of scanning the audit
    trail and the exception history. A snapshot can be recomputed any time
    (the job upserts the row for (program, day)); today's row is provisional.
    """

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    # no index of its own: uniq_program_metrics_day (program, day) leads with it
    program = models.ForeignKey(
        Program, on_delete=models.CASCADE, related_name="metrics", db_index=False
    )
    day = models.DateField(help_text="UTC calendar day the figures cover.")
    active_participants = models.PositiveIntegerField(
        default=0, help_text="Non-terminal enrollments at the end of the day."
    )
    enrollments_opened = models.PositiveIntegerField(default=0)
    transitions = models.PositiveIntegerField(
        default=0, help_text="Enrollment state changes during the day."
    )
    steps_automated = models.PositiveIntegerField(
        default=0, help_text="Step completions by a partner event or a message."
    )
    steps_manual = models.PositiveIntegerField(
        default=0, help_text="Step completions by a coordinator."
    )
    exceptions_opened = models.PositiveIntegerField(default=0)
    exceptions_resolved = models.PositiveIntegerField(default=0)
    median_resolve_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Median time to resolve of the items resolved this day."
    )
    backlog = models.PositiveIntegerField(
        default=0, help_text="Open, claimed or snoozed items at the end of the day."
    )
    deliveries = models.PositiveIntegerField(
        default=0, help_text="Webhook delivery attempts during the day (organization-wide)."
    )
    deliveries_failed = models.PositiveIntegerField(default=0)
    messages = models.PositiveIntegerField(default=0, help_text="Messages scheduled this day.")
    messages_suppressed = models.PositiveIntegerField(default=0)
    manual_interventions = models.PositiveIntegerField(
        default=0,
        help_text="Actions by people on queue items, enrollments and steps during the day.",
    )
    interventions_7d = models.PositiveIntegerField(
        default=0, help_text="Manual interventions in the 7 days ending with this day."
    )
    strain_index = models.FloatField(
        null=True,
        blank=True,
        help_text="Manual interventions per 100 active participants per week "
        "(the 7 days ending with this day).",
    )
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["program", "-day"]
        constraints = [
            models.UniqueConstraint(fields=["program", "day"], name="uniq_program_metrics_day")
        ]

    def __str__(self):
        return f"{self.program_id} {self.day}"

    @property
    def automation_rate(self) -> float | None:
        total = self.steps_automated + self.steps_manual
        return round(100 * self.steps_automated / total, 1) if total else None

    @property
    def delivery_failure_rate(self) -> float | None:
        return round(100 * self.deliveries_failed / self.deliveries, 1) if self.deliveries else None

    @property
    def suppression_rate(self) -> float | None:
        return round(100 * self.messages_suppressed / self.messages, 1) if self.messages else None
