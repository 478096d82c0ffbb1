"""Shared pieces of the participants services: actors and roles, row locks,
and writing an enrollment's outbox events in sequence."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from integrations.outbox import outbox_write
from participants.models import TRANSITION_PAST, Enrollment
from programs.actors import Actor, as_actor
from programs.errors import PermissionDenied
from programs.tenancy import role_in

ALL_TRANSITIONS = tuple(TRANSITION_PAST)
ACTING_ROLES = ("coordinator", "lead", "admin")

# Who may run which enrollment transition (the rule lives here and only here):
# - users need a membership in the enrollment's organization: coordinators run
#   every transition except `complete`, which a lead or admin signs off
#   (completion is what the program reports and bills on); auditors run none;
# - API clients (partners) run the partner-facing moves: screening results,
#   invitation, start of onboarding, pause/resume and withdrawal. `activate`
#   is the engine's (auto-advance) or a person's call, `complete` a lead's.
#   The API layer has already scoped the client to its organization;
# - system actors (jobs, auto-advance) run everything.
USER_TRANSITIONS = {
    "coordinator": frozenset(ALL_TRANSITIONS) - {"complete"},
    "lead": frozenset(ALL_TRANSITIONS),
    "admin": frozenset(ALL_TRANSITIONS),
    "auditor": frozenset(),
}
API_CLIENT_TRANSITIONS = frozenset(
    {"screen_eligible", "screen_ineligible", "invite", "start_onboarding", "pause", "resume"}
    | {"withdraw"}
)


def actor_user(actor: Actor):
    if actor.user is not None:
        return actor.user
    return get_user_model().objects.filter(pk=actor.id).first()


def actor_role(actor: Actor, organization_id) -> str | None:
    if actor.kind != Actor.USER:
        return None
    return role_in(actor_user(actor), organization_id)


def may_transition(actor, organization_id, transition: str) -> bool:
    actor = as_actor(actor)
    if actor.kind == Actor.SYSTEM:
        return True
    if actor.kind == Actor.API_CLIENT:
        return transition in API_CLIENT_TRANSITIONS
    role = actor_role(actor, organization_id)
    return transition in USER_TRANSITIONS.get(role, frozenset())


def require_transition_permission(actor: Actor, organization_id, transition: str) -> None:
    if not may_transition(actor, organization_id, transition):
        who = actor.kind if actor.kind != Actor.USER else actor_role(actor, organization_id)
        raise PermissionDenied(
            f"{actor.label} ({who or 'not a member of this organization'}) "
            f"may not run {transition} on enrollments"
        )


def require_acting_role(actor: Actor, organization_id, what: str) -> None:
    """Users need coordinator, lead or admin in the organization; API clients
    and system actors pass (the API scopes clients to their organization)."""
    if actor.kind != Actor.USER:
        return
    role = actor_role(actor, organization_id)
    if role not in ACTING_ROLES:
        raise PermissionDenied(
            f"{actor.label} ({role or 'not a member of this organization'}) may not {what}"
        )


def lock_enrollment(enrollment_id) -> Enrollment:
    """The enrollment row, locked for the rest of the transaction (PostgreSQL;
    SQLite's IMMEDIATE transactions serialise writers instead). Only the
    enrollment row is locked, never the program or participant."""
    return Enrollment.objects.select_for_update(of=("self",)).get(pk=enrollment_id)


def enrollment_payload(enrollment: Enrollment) -> dict:
    return {
        "enrollment_id": enrollment.pk,
        "participant_ref": enrollment.participant.external_ref,
        "program": enrollment.program.slug,
        "program_version": enrollment.program_version.number,
        "state": enrollment.state,
    }


def emit(enrollment: Enrollment, event_type: str, payload: dict, *, occurred_at=None):
    """Write an outbox event for `enrollment` with the next sequence number.

    The caller holds the enrollment's row lock, so sequences never collide.
    """
    enrollment.event_sequence += 1
    Enrollment.objects.filter(pk=enrollment.pk).update(event_sequence=enrollment.event_sequence)
    return outbox_write(
        organization=enrollment.organization_id,
        event_type_name=event_type,
        payload={**enrollment_payload(enrollment), **payload},
        sequence_key=enrollment.sequence_key,
        sequence=enrollment.event_sequence,
        occurred_at=occurred_at,
    )
