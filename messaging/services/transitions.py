"""The one place a message changes state: transition, save, audit, outbox, signal.

Callers hold the row lock (select_for_update) inside `transaction.atomic()`.
A failed or undeliverable message raises a `message_failed` exception
(deduplicated per enrollment and template); a sent or delivered one
auto-resolves it.
"""

from __future__ import annotations

from django.utils import timezone
from django_fsm import can_proceed

from integrations.outbox import outbox_write
from messaging.models import Message, MessageState
from messaging.signals import message_status_changed
from programs.errors import TransitionNotAllowed
from programs.services import audit_record, exception_raise, exception_resolve_for

MESSAGE_FAILED = "message_failed"


def failure_dedup_key(message: Message) -> str:
    return f"message_failed:{message.enrollment_id}:{message.template_key}"


def message_payload(message: Message, *, from_state: str, reason: str = "") -> dict:
    """The outbox payload: references and state only, no PHI."""
    return {
        "message_id": message.pk,
        "state": message.state,
        "from_state": from_state,
        "program_id": message.program_id,
        "enrollment_id": message.enrollment_id,
        "step_instance_id": message.step_instance_id,
        "participant_ref": message.participant_ref,
        "channel": message.channel,
        "template_key": message.template_key,
        "template_version": message.template_version,
        "scheduled_for": message.scheduled_for.isoformat() if message.scheduled_for else None,
        "suppression_reason": message.suppression_reason,
        "reason": reason[:500],
        "occurred_at": timezone.now().isoformat(),
    }


def record_change(message: Message, *, from_state: str, actor, reason: str = "", metadata=None):
    """Audit row + outbox event + signal for a change already saved."""
    audit_record(
        actor=actor,
        action=f"message.{message.state}",
        target=message,
        organization=message.organization_id,
        from_state=from_state,
        to_state=message.state,
        reason=reason,
        metadata={
            "enrollment_id": message.enrollment_id,
            "template": f"{message.template_key} v{message.template_version}",
            "channel": message.channel,
            **(metadata or {}),
        },
    )
    outbox_write(
        organization=message.organization_id,
        event_type_name=f"messaging.message.{message.state}",
        payload=message_payload(message, from_state=from_state, reason=reason),
    )
    message_status_changed.send(
        sender=Message, message=message, from_state=from_state, to_state=message.state
    )
    if message.state in (MessageState.FAILED, MessageState.UNDELIVERABLE):
        if not message.failure_reported:
            Message.objects.filter(pk=message.pk).update(failure_reported=True)
            message.failure_reported = True
        exception_raise(
            organization=message.organization_id,
            program=message.program_id,
            kind=MESSAGE_FAILED,
            title=f"Message {message.template_key} ({message.get_channel_display()}) "
            f"{message.state} for {message.participant_ref}",
            detail=message.last_error or reason,
            dedup_key=failure_dedup_key(message),
            subject=message,
            actor=actor,
            context={"message_id": message.pk, "enrollment_id": message.enrollment_id},
        )
    elif message.failure_reported and message.state in (MessageState.SENT, MessageState.DELIVERED):
        # Only a message that failed before (then was resent) can have an open item.
        exception_resolve_for(
            organization=message.organization_id,
            dedup_key=failure_dedup_key(message),
            actor=actor,
            note=f"message #{message.pk} {message.state}",
        )


def apply_transition(
    message: Message, name: str, *, actor, reason: str = "", metadata=None, **kwargs
) -> Message:
    """Run transition `name` on a locked message and record it. Raises
    TransitionNotAllowed naming the allowed transitions."""
    method = getattr(message, name)
    if not can_proceed(method):
        raise TransitionNotAllowed(
            obj_label=f"message #{message.pk}",
            transition=name,
            current_state=message.state,
            allowed=[t.name for t in message.get_available_state_transitions()],
        )
    from_state = message.state
    method(**kwargs)
    message.save()
    record_change(message, from_state=from_state, actor=actor, reason=reason, metadata=metadata)
    return message
