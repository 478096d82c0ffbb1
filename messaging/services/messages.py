"""Canceling, resending and switching messages (scheduling: messaging.services.schedule)."""

from __future__ import annotations

import logging
import threading
import time as _time
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from messaging.errors import MessageNotFound, TemplateNotFound
from messaging.models import (
    PENDING_STATES,
    Message,
    MessageKind,
    OptOut,
    SuppressionReason,
)
from messaging.scheduling import next_allowed, zone
from messaging.services.schedule import (  # noqa: F401 - re-exported
    ScheduleRequest,
    daily_cap,
    message_schedule,
    messages_schedule_many,
    template_for,
)
from messaging.services.transitions import apply_transition
from programs.actors import as_actor

logger = logging.getLogger(__name__)


def suppress_message(message: Message, reason_code: str, actor) -> Message:
    """Suppress a locked pending message, recording why (audited, outbox, signal)."""
    return apply_transition(
        message,
        "suppress",
        actor=actor,
        reason=SuppressionReason(reason_code).label,
        metadata={"suppression_reason": reason_code},
        reason_code=reason_code,
    )


def message_schedule_reminder(
    *,
    organization,
    program,
    enrollment_id: int,
    participant_ref: str,
    participant_timezone: str,
    locale: str,
    step_instance_id: int,
    step_title: str,
    reminder_template: str,
    due_at: datetime | None = None,
    actor,
) -> tuple[Message, bool]:
    """Schedule the reminder for an overdue step (the step definition's
    `message.reminder_template`). At most one per step and reminder template
    (the same dedup rule as any message); same quiet hours, cap and opt-outs."""
    return message_schedule(
        organization=organization,
        program=program,
        enrollment_id=enrollment_id,
        participant_ref=participant_ref,
        participant_timezone=participant_timezone,
        locale=locale,
        template_key=reminder_template,
        step_instance_id=step_instance_id,
        step_title=step_title,
        due_at=due_at,
        actor=actor,
        kind=MessageKind.REMINDER,
    )


def messages_cancel_for_enrollment(
    *, enrollment_id: int, reason: str, actor, keep_states=None
) -> int:
    """Cancel the enrollment's scheduled and queued messages (it left the state
    that needed them); return how many. `keep_states` lists message states to
    leave alone (e.g. {"queued"} to let in-flight sends finish). Each is
    audited as `message.canceled` with the reason and emits
    `messaging.message.canceled`."""
    actor = as_actor(actor)
    states = [s for s in PENDING_STATES if s not in set(keep_states or ())]
    if not states:
        return 0
    canceled = 0
    with transaction.atomic():
        for message in (
            Message.objects.select_for_update()
            .filter(enrollment_id=enrollment_id, state__in=states)
            .order_by("pk")
        ):
            apply_transition(message, "cancel", actor=actor, reason=reason)
            canceled += 1
    return canceled


def message_cancel(*, message_id: int, reason: str, actor) -> Message:
    """Cancel one scheduled or queued message (audited)."""
    with transaction.atomic():
        message = _lock(message_id)
        return apply_transition(message, "cancel", actor=as_actor(actor), reason=reason)


def _lock(message_id: int) -> Message:
    try:
        return Message.objects.select_for_update().get(pk=message_id)
    except Message.DoesNotExist:
        raise MessageNotFound(f"message #{message_id} does not exist") from None


def message_resend(*, message_id: int, actor, reason: str = "resend") -> Message:
    """failed|undeliverable|suppressed -> scheduled, due now (outside quiet hours).

    An opt-out still applies: the dispatcher suppresses the message again
    rather than send to someone who said STOP. Audited as `message.scheduled`.
    """
    actor = as_actor(actor)
    with transaction.atomic():
        message = _lock(message_id)
        program = message.program
        at = next_allowed(
            timezone.now(),
            zone(message.participant_timezone, program.timezone),
            program.quiet_hours_start,
            program.quiet_hours_end,
        )
        apply_transition(message, "resend", actor=actor, reason=reason, at=at)
    transaction.on_commit(kick_dispatcher)
    return message


def message_switch_channel(*, message_id: int, actor, channel: str | None = None) -> Message:
    """Resend on another channel: the latest published template with the same key
    and locale on `channel` (or the next channel in preference order that the
    participant has not opted out of). Audited with from/to channel."""
    actor = as_actor(actor)
    with transaction.atomic():
        message = _lock(message_id)
        opted_out = set(
            OptOut.objects.filter(
                organization_id=message.organization_id, participant_ref=message.participant_ref
            ).values_list("channel", flat=True)
        )
        if channel is None:
            template = template_for(
                program=message.program,
                key=message.template_key,
                locale=message.locale,
                channel=None,
                avoid_channels=opted_out | {message.channel},
            )
            if template.channel == message.channel or template.channel in opted_out:
                raise TemplateNotFound(
                    f"no other channel has a {message.template_key!r} template the participant "
                    "has not opted out of"
                )
        else:
            template = template_for(
                program=message.program,
                key=message.template_key,
                locale=message.locale,
                channel=channel,
            )
        old_channel = message.channel
        message.template = template
        message.template_version = template.version
        message.channel = template.channel
        at = next_allowed(
            timezone.now(),
            zone(message.participant_timezone, message.program.timezone),
            message.program.quiet_hours_start,
            message.program.quiet_hours_end,
        )
        apply_transition(
            message,
            "resend",
            actor=actor,
            reason=f"switched channel {old_channel} -> {template.channel}",
            metadata={"from_channel": old_channel, "to_channel": template.channel},
            at=at,
        )
    transaction.on_commit(kick_dispatcher)
    return message


# --- waking the dispatcher after commit ----------------------------------------------

_kick_lock = threading.Lock()
_last_kick = 0.0


def kick_dispatcher() -> None:
    """Enqueue a dispatch run now (at most one per second per process); the
    every-minute schedule catches anything this misses."""
    global _last_kick
    if not getattr(settings, "BATON_MESSAGING_DISPATCH_ON_COMMIT", True):
        return
    with _kick_lock:
        now = _time.monotonic()
        if now - _last_kick < 1.0:
            return
        _last_kick = now
    try:
        from django_q.tasks import async_task

        async_task("messaging.tasks.dispatch_due_messages", task_name="messaging.dispatch")
    except Exception:  # the broker being down must not fail the caller's request
        logger.exception("could not enqueue message dispatch; the schedule will pick it up")
