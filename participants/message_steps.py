"""`message` steps send their message through messaging.

Registered as the step-kind handler for `message` (participants.apps). When a
`message` step is created, it schedules the step's template for the
participant (inside the creating transaction: rows only, the dispatcher sends
after commit). The step then completes through messaging's
`message_status_changed` signal (participants.receivers). Without a published
template the default handler records `participants.step.action_requested`
instead, so a missing template is never a silent no-op (and the step's SLA
still runs).
"""

from __future__ import annotations

import logging

from participants.step_kinds import record_action_requested

logger = logging.getLogger(__name__)


def schedule_step_message(*, step, enrollment, definition, actor):
    from messaging.errors import TemplateNotFound
    from messaging.services import message_schedule

    message = definition.get("message") or {}
    template_key = message.get("template")
    if not template_key:
        record_action_requested(
            step=step, enrollment=enrollment, definition=definition, actor=actor
        )
        return
    participant = enrollment.participant
    try:
        message_schedule(
            organization=enrollment.organization,
            program=enrollment.program,
            enrollment_id=enrollment.pk,
            participant_ref=participant.external_ref,
            participant_timezone=participant.timezone,
            locale=participant.locale,
            template_key=template_key,
            channel=message.get("channel"),
            step_instance_id=step.pk,
            step_title=step.title,
            due_at=step.due_at,
            actor=actor,
            kind="step",
            complete_on=message.get("complete_on"),
        )
    except TemplateNotFound:
        logger.warning(
            "no published template %r for program %s; step %s waits for a person",
            template_key,
            enrollment.program_id,
            step.pk,
        )
        record_action_requested(
            step=step, enrollment=enrollment, definition=definition, actor=actor
        )
