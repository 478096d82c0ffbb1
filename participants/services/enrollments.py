"""Enrollment lifecycle: open, transition, auto-advance.

States (see docs/participants.md for the diagram): referred → eligible →
invited → onboarding → active ⇄ paused → completed; referred → ineligible;
any non-terminal state → withdrawn. ineligible, completed and withdrawn are
terminal and accept nothing.

Each transition runs in one transaction that locks the enrollment row
(select_for_update; the optimistic ConcurrentTransitionMixin backs it up),
checks role and conditions, saves, writes the audit row `enrollment.<name>`
and the outbox event `participants.enrollment.<past tense>`, then updates the
step checklist (skips steps of the stage left, instantiates the new stage).
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone
from django_fsm import ConcurrentTransition, can_proceed

from participants.errors import EnrollmentNotOpen
from participants.models import (
    NON_TERMINAL_STATES,
    TRANSITION_PAST,
    Enrollment,
    EnrollmentState,
    Participant,
    current_stage_done,
)
from participants.services.common import (
    ALL_TRANSITIONS,
    lock_enrollment,
    may_transition,
    require_acting_role,
    require_transition_permission,
)
from participants.services.common import emit as emit_event
from participants.services.steps import (
    close_open_steps_except,
    instantiate_stage_steps,
    restart_clocks,
    stop_clocks,
)
from programs.actors import Actor, as_actor
from programs.errors import ConcurrentUpdate, TransitionNotAllowed
from programs.services import audit_record

AUTO_ADVANCE_ACTOR = Actor.system("participants.auto_advance")
_MAX_CHAIN = len(ALL_TRANSITIONS)


def enrollment_allowed_transitions(enrollment: Enrollment, actor=None) -> list[str]:
    """Transitions allowed from the current state whose conditions hold, in the
    canonical order; with `actor`, only those the actor's role may run."""
    available = {t.name for t in enrollment.get_available_state_transitions()}
    names = [name for name in ALL_TRANSITIONS if name in available]
    if actor is not None:
        actor = as_actor(actor)
        names = [n for n in names if may_transition(actor, enrollment.organization_id, n)]
    return names


def _refuse(enrollment: Enrollment, transition: str):
    raise TransitionNotAllowed(
        obj_label=f"enrollment #{enrollment.pk}",
        transition=transition,
        current_state=enrollment.state,
        allowed=enrollment_allowed_transitions(enrollment),
    )


def apply_transition(
    enrollment: Enrollment, name: str, *, actor: Actor, reason: str = "", depth: int = 0
) -> Enrollment:
    """Run transition `name` on a locked enrollment, with audit, event and steps.

    Internal: callers have locked the row and checked the actor's role.
    """
    method = getattr(enrollment, name)
    if not can_proceed(method):
        _refuse(enrollment, name)
    from_state = enrollment.state
    method()
    enrollment.state_changed_at = timezone.now()
    enrollment.state_reason = reason
    try:
        enrollment.save(update_fields=["state", "state_changed_at", "state_reason", "updated_at"])
    except ConcurrentTransition as exc:
        raise ConcurrentUpdate(
            f"enrollment #{enrollment.pk} changed while {name} was running; re-read and retry"
        ) from exc
    past = TRANSITION_PAST[name]
    audit_record(
        actor=actor,
        action=f"enrollment.{name}",
        target=enrollment,
        organization=enrollment.organization_id,
        from_state=from_state,
        to_state=enrollment.state,
        reason=reason,
        metadata={"auto": depth > 0 or actor == AUTO_ADVANCE_ACTOR},
    )
    emit_event(
        enrollment,
        f"participants.enrollment.{past}",
        {"from_state": from_state, "transition": name},
        occurred_at=enrollment.state_changed_at,
    )
    _update_checklist(enrollment, from_state, name, actor)
    maybe_auto_advance(enrollment, depth=depth + 1)
    return enrollment


def _update_checklist(enrollment: Enrollment, from_state: str, name: str, actor: Actor) -> None:
    new_state = enrollment.state
    if new_state == EnrollmentState.PAUSED:
        stop_clocks(enrollment)
        return
    if from_state == EnrollmentState.PAUSED:
        restart_clocks(enrollment)
    close_open_steps_except(enrollment, new_state, actor, why=f"stage ended by {name}")
    instantiate_stage_steps(enrollment, new_state, actor)


def maybe_auto_advance(enrollment: Enrollment, *, depth: int = 0) -> bool:
    """If every required step of the current stage is done and the stage names
    an `on_complete` transition that is allowed now, run it as the system
    (audited like any transition). Caller holds the enrollment lock."""
    if depth > _MAX_CHAIN or enrollment.is_terminal:
        return False
    stage = enrollment.program_version.stage_for_state(enrollment.state)
    name = (stage or {}).get("on_complete")
    if not name or not current_stage_done(enrollment):
        return False
    if not can_proceed(getattr(enrollment, name)):
        return False
    apply_transition(
        enrollment,
        name,
        actor=AUTO_ADVANCE_ACTOR,
        reason=f"all required steps of stage {stage['key']} are done",
        depth=depth,
    )
    return True


def enrollment_transition(
    *, enrollment_id: int, transition: str, actor, reason: str = ""
) -> Enrollment:
    """Run one enrollment transition by name.

    Rules: the actor's role must allow it (see participants.services.common:
    coordinators all but `complete`, leads/admins all, auditors none; API
    clients the partner-facing ones; system all) → PermissionDenied;
    the current state and conditions must allow it → TransitionNotAllowed
    naming the state and the allowed transitions; `withdraw` needs a reason
    → ValueError. Concurrent writers queue on the row lock, so exactly one of
    several conflicting transitions wins and the rest get
    TransitionNotAllowed (or ConcurrentUpdate). Emits
    participants.enrollment.<past tense>; audited as enrollment.<transition>.
    """
    if transition not in ALL_TRANSITIONS:
        raise ValueError(f"unknown transition {transition!r}; known: {', '.join(ALL_TRANSITIONS)}")
    if transition == "withdraw" and not (reason or "").strip():
        raise ValueError("reason: a reason is required to withdraw an enrollment")
    actor = as_actor(actor)
    with transaction.atomic():
        enrollment = lock_enrollment(enrollment_id)
        require_transition_permission(actor, enrollment.organization_id, transition)
        apply_transition(enrollment, transition, actor=actor, reason=(reason or "").strip())
    return enrollment


def enrollment_open(*, participant: Participant, program, actor) -> tuple[Enrollment, bool]:
    """Open an enrollment in `referred` on the program's latest published version.

    If the participant already has a non-terminal enrollment in the program,
    returns it with created=False (a unique partial index backs this under
    concurrency). The program must be active (EnrollmentNotOpen otherwise).
    Users need coordinator, lead or admin in the organization. Instantiates the
    `referred` stage's steps. Emits participants.enrollment.referred; audited
    as enrollment.opened.
    """
    actor = as_actor(actor)
    if participant.organization_id != program.organization_id:
        raise ValueError("the participant and the program belong to different organizations")
    require_acting_role(actor, program.organization_id, "open enrollments")
    for _attempt in range(2):
        try:
            with transaction.atomic():
                return _open(participant, program, actor)
        except IntegrityError:
            continue  # a concurrent open won; the next pass returns its enrollment
    raise ConcurrentUpdate(f"could not open an enrollment for {participant}; retry")


def _open(participant, program, actor) -> tuple[Enrollment, bool]:
    existing = (
        Enrollment.objects.filter(
            participant=participant, program=program, state__in=NON_TERMINAL_STATES
        )
        .order_by("-id")
        .first()
    )
    if existing is not None:
        return existing, False
    program.refresh_from_db(fields=["state"])
    if program.state != "active":
        raise EnrollmentNotOpen(
            f"program {program.slug} is {program.state}; it takes enrollments only when active"
        )
    version = program.latest_published_version()
    if version is None:
        raise EnrollmentNotOpen(f"program {program.slug} has no published version")
    with transaction.atomic():
        enrollment = Enrollment.objects.create(
            organization_id=participant.organization_id,
            participant=participant,
            program=program,
            program_version=version,
            state=EnrollmentState.REFERRED,
            state_changed_at=timezone.now(),
        )
    enrollment = lock_enrollment(enrollment.pk)
    audit_record(
        actor=actor,
        action="enrollment.opened",
        target=enrollment,
        organization=enrollment.organization_id,
        to_state=enrollment.state,
        metadata={"program": program.slug, "program_version": version.number},
    )
    emit_event(
        enrollment,
        "participants.enrollment.referred",
        {"from_state": "", "transition": "open"},
        occurred_at=enrollment.state_changed_at,
    )
    instantiate_stage_steps(enrollment, enrollment.state, actor)
    maybe_auto_advance(enrollment)
    return enrollment, True
