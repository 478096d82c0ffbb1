"""Reads of the messaging app."""

from __future__ import annotations

from django.db.models import Q
from django.urls import NoReverseMatch, reverse

from messaging.models import Message, MessageState, OptOut

_STATE_TIMES = {
    MessageState.SCHEDULED: "scheduled_for",
    MessageState.QUEUED: "scheduled_for",
    MessageState.SENT: "sent_at",
    MessageState.DELIVERED: "delivered_at",
    MessageState.FAILED: "failed_at",
    MessageState.UNDELIVERABLE: "failed_at",
}


def messages_for_enrollment(enrollment_id: int):
    return list(
        Message.objects.filter(enrollment_id=enrollment_id).order_by("-scheduled_for", "-pk")
    )


def _admin_url(message: Message) -> str:
    try:
        return reverse("admin:messaging_message_change", args=[message.pk])
    except NoReverseMatch:
        return ""


def message_timeline_row(message: Message):
    from programs.timeline import TimelineRow

    at = getattr(message, _STATE_TIMES.get(message.state, "updated_at"), None) or message.updated_at
    detail = (
        f"{message.get_channel_display()} · template "
        f"{message.template_key} v{message.template_version}"
    )
    if message.state == MessageState.SCHEDULED:
        detail += f" · due {message.scheduled_for:%Y-%m-%d %H:%M} UTC"
    if message.suppression_reason:
        detail += f" · {message.get_suppression_reason_display()}"
    if message.last_error and message.state in (MessageState.FAILED, MessageState.UNDELIVERABLE):
        detail += f" · {message.last_error[:200]}"
    title = f"Message {message.template_key} {message.get_state_display().lower()}"
    return TimelineRow(
        at=at,
        kind="message",
        title=title,
        detail=detail,
        actor="messaging",
        url=_admin_url(message),
    )


def timeline_rows_for_enrollment(enrollment):
    """Timeline contributor: one row per message of the enrollment (its current state)."""
    return [message_timeline_row(m) for m in messages_for_enrollment(enrollment.pk)]


def message_subject_context(exception):
    """What the console shows about a `message_failed` item's message."""
    from programs.registries import SubjectContext

    message = Message.objects.filter(pk=exception.subject_id).first()
    if message is None:
        return None
    return SubjectContext(
        title=f"Message #{message.pk}: {message.template_key} ({message.get_channel_display()})",
        fields=[
            ("State", message.get_state_display()),
            ("Participant", message.participant_ref),
            ("Enrollment", message.enrollment_id),
            ("Attempts", message.attempts),
            ("Last error", message.last_error or "—"),
        ],
        rows=[message_timeline_row(m) for m in messages_for_enrollment(message.enrollment_id)],
        links=[("Message in admin", _admin_url(message))] if _admin_url(message) else [],
    )


def opted_out_channels(*, organization_id: int, participant_ref: str) -> set[str]:
    return set(
        OptOut.objects.filter(
            organization_id=organization_id, participant_ref=participant_ref
        ).values_list("channel", flat=True)
    )


def due_messages_count(now) -> int:
    return Message.objects.filter(
        Q(state=MessageState.SCHEDULED, scheduled_for__lte=now)
        | Q(state=MessageState.QUEUED, next_attempt_at__lte=now)
    ).count()
