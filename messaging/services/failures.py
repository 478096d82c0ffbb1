"""Retry actions offered on `message_failed` exception-queue items."""

from __future__ import annotations

from messaging.models import Message
from messaging.services.messages import message_resend, message_switch_channel


def _message_id(exception) -> int:
    message_id = (exception.context or {}).get("message_id") or exception.subject_id
    if not message_id:
        raise ValueError("this exception does not name a message")
    return int(message_id)


def retry_resend(exception, actor) -> str:
    """Resend the failed message on the same channel."""
    message = message_resend(message_id=_message_id(exception), actor=actor, reason="resend")
    return f"message #{message.pk} rescheduled on {message.get_channel_display()}"


def retry_switch_channel(exception, actor) -> str:
    """Resend on the next channel with a template the participant has not opted out of."""
    before = Message.objects.get(pk=_message_id(exception)).channel
    message = message_switch_channel(message_id=_message_id(exception), actor=actor)
    return f"message #{message.pk} switched from {before} to {message.channel} and rescheduled"
