"""Event types participants emits, and the exception kinds it raises.

Names are a public contract: never rename or reuse one once shipped.
Registered from ParticipantsConfig.ready().
"""

from participants.models import TRANSITION_PAST

ENROLLMENT_EVENTS = {
    "participants.enrollment.referred": "An enrollment was opened (state referred).",
    **{
        f"participants.enrollment.{past}": f"An enrollment ran the `{name}` transition."
        for name, past in TRANSITION_PAST.items()
    },
}
STEP_EVENTS = {
    "participants.step.completed": "A checklist step was completed (event, coordinator, message).",
    "participants.step.skipped": "A checklist step was skipped (by a person, or its stage ended).",
    "participants.step.overdue": "A checklist step passed its due date (SLA sweep).",
    "participants.step.action_requested": (
        "A step was created whose kind needs an action (message, partner task, manual, wait)."
    ),
}
OTHER_EVENTS = {
    "participants.participant.created": "A participant reference was registered.",
    "participants.participant.updated": "A participant's operational settings changed.",
    "participants.event.unmatched": "A partner event matched no participant or no step.",
}
ALL_EVENTS = {**ENROLLMENT_EVENTS, **STEP_EVENTS, **OTHER_EVENTS}


def _retry_unmatched(exception, actor) -> str:
    from participants.services.events import retry_unmatched_event

    return retry_unmatched_event(exception, actor)


def register_all():
    from integrations.event_types import register_event_type
    from programs.registries import (
        register_exception_kind,
        register_retry_action,
        register_schedule,
    )

    for name, description in ALL_EVENTS.items():
        register_event_type(name, description)
    register_exception_kind(
        "sla_breach",
        "Step overdue",
        default_severity="medium",
        description="A checklist step passed its due date; closes itself when the step is done.",
    )
    register_exception_kind(
        "unmatched_event",
        "Unmatched partner event",
        default_severity="medium",
        description="A partner event named an unknown participant, or no step expected it.",
    )
    register_retry_action(
        "unmatched_event",
        "Apply stored events again",
        _retry_unmatched,
        description="Applies the participant's stored events of this type again, after a "
        "referral or a stage change; the item resolves itself once every one matches.",
    )
    register_schedule(
        "participants.sla_sweep",
        "participants.tasks.sla_sweep_task",
        minutes=1,
        description="Mark steps past due as overdue and open one sla_breach item per step.",
    )
