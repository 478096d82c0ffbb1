"""Scheduling, canceling and resending messages."""

from __future__ import annotations

import logging
import threading
import time as _time
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from messaging.errors import MessageNotFound, TemplateNotFound
from messaging.models import (
    CAP_STATES,
    CHANNEL_PREFERENCE,
    PENDING_STATES,
    Message,
    MessageKind,
    MessageState,
    MessageTemplate,
    OptOut,
    SuppressionReason,
)
from messaging.rendering import build_variables
from messaging.scheduling import local_day_bounds, next_allowed, zone
from messaging.services.transitions import apply_transition, record_change
from programs.actors import as_actor

logger = logging.getLogger(__name__)


def daily_cap() -> int:
    """Messages per participant per local day (all channels); 0 turns the cap off."""
    return int(getattr(settings, "BATON_MESSAGING_DAILY_CAP", 3))


def _locales(locale: str) -> list[str]:
    out = []
    for candidate in (locale, (locale or "").split("-")[0], "en"):
        if candidate and candidate not in out:
            out.append(candidate)
    return out


def template_for(
    *, program, key: str, locale: str, channel: str | None, avoid_channels=()
) -> MessageTemplate:
    """The latest published version for `key`, falling back from `es-US` to `es`
    to `en`. Without a channel, channels are tried in CHANNEL_PREFERENCE order,
    skipping `avoid_channels` (opted out) while another one has a template."""
    locales = _locales(locale)
    templates = list(
        MessageTemplate.objects.filter(
            program=program, key=key, locale__in=locales, published_at__isnull=False
        ).order_by("-version")
    )
    if channel:
        templates = [t for t in templates if t.channel == channel]
    if not templates:
        where = f" on {channel}" if channel else ""
        raise TemplateNotFound(
            f"no published template {key!r}{where} for locale {locale!r} in {program}; "
            "load templates (manage.py load_templates) or publish one in the admin"
        )

    def rank(t):
        channel_rank = (
            CHANNEL_PREFERENCE.index(t.channel) if t.channel in CHANNEL_PREFERENCE else 99
        )
        return (t.channel in avoid_channels, locales.index(t.locale), channel_rank, -t.version)

    return sorted(templates, key=rank)[0]


def _existing(*, organization_id, step_instance_id, template_key, dedup_key):
    qs = Message.objects.filter(organization_id=organization_id)
    if step_instance_id is not None:
        found = qs.filter(step_instance_id=step_instance_id, template_key=template_key).first()
        if found:
            return found
    if dedup_key:
        return qs.filter(dedup_key=dedup_key).first()
    return None


def _cap_reached(*, organization_id, participant_ref, at: datetime, tz) -> bool:
    cap = daily_cap()
    if cap <= 0:
        return False
    start, end = local_day_bounds(at, tz)
    sent_today = Message.objects.filter(
        organization_id=organization_id,
        participant_ref=participant_ref,
        state__in=CAP_STATES,
        scheduled_for__gte=start,
        scheduled_for__lt=end,
    ).count()
    return sent_today >= cap


def message_schedule(
    *,
    organization,
    program,
    enrollment_id: int,
    participant_ref: str,
    participant_timezone: str,
    locale: str,
    template_key: str,
    channel: str | None = None,
    step_instance_id: int | None = None,
    step_title: str = "",
    due_at: datetime | None = None,
    not_before: datetime | None = None,
    dedup_key: str | None = None,
    actor,
    kind: str | None = None,
    complete_on: str | None = None,
) -> tuple[Message, bool]:
    """Schedule one message; return (message, created).

    Rules, in order:
    - dedup: a message already exists for this step and template (or this
      `dedup_key`) -> it is returned with created=False. A unique constraint
      backs this under concurrency;
    - the template is the latest published version for the key, locale
      (with fallback) and channel (preferring one the participant has not
      opted out of when `channel` is None); TemplateNotFound otherwise;
    - `scheduled_for` is `not_before` (or now), moved out of the program's
      quiet hours in the participant's timezone;
    - suppressed at once (reason recorded) when the participant opted out of
      the channel, when quiet hours push it past the template's expiry, or
      when the participant's daily frequency cap is reached.
    Audited as `message.scheduled` (then `message.suppressed`), with outbox
    events `messaging.message.scheduled|suppressed` and `message_status_changed`.
    Safe inside the caller's transaction (participants schedules on step creation).
    """
    actor = as_actor(actor)
    organization_id = getattr(organization, "pk", organization)
    now = timezone.now()
    existing = _existing(
        organization_id=organization_id,
        step_instance_id=step_instance_id,
        template_key=template_key,
        dedup_key=dedup_key,
    )
    if existing is not None:
        return existing, False

    opted_out = set(
        OptOut.objects.filter(
            organization_id=organization_id, participant_ref=participant_ref
        ).values_list("channel", flat=True)
    )
    template = template_for(
        program=program,
        key=template_key,
        locale=locale,
        channel=channel,
        avoid_channels=opted_out,
    )
    tz = zone(participant_timezone, program.timezone)
    candidate = max(now, not_before) if not_before else now
    scheduled_for = next_allowed(candidate, tz, program.quiet_hours_start, program.quiet_hours_end)
    expires_at = candidate + template.expires_after if template.expires_after else None

    suppression = ""
    if template.channel in opted_out:
        suppression = SuppressionReason.OPTED_OUT
    elif expires_at is not None and scheduled_for > expires_at:
        suppression = SuppressionReason.QUIET_HOURS
    elif _cap_reached(
        organization_id=organization_id, participant_ref=participant_ref, at=scheduled_for, tz=tz
    ):
        suppression = SuppressionReason.FREQUENCY_CAP

    variables = build_variables(
        program_name=program.name,
        organization_name=getattr(organization, "name", "") or program.organization.name,
        step_title=step_title,
        due_at=due_at,
        timezone_name=tz.key,
        links=template.links,
    )
    kind = kind or (MessageKind.STEP if step_instance_id is not None else MessageKind.OTHER)
    try:
        with transaction.atomic():
            message = Message.objects.create(
                organization_id=organization_id,
                program=program,
                enrollment_id=enrollment_id,
                step_instance_id=step_instance_id,
                step_title=step_title[:200],
                kind=kind,
                participant_ref=participant_ref,
                participant_timezone=tz.key,
                locale=locale or "en",
                template=template,
                template_key=template_key,
                template_version=template.version,
                channel=template.channel,
                complete_on=complete_on or template.complete_on,
                variables=variables,
                due_at=due_at,
                scheduled_for=scheduled_for,
                expires_at=expires_at,
                dedup_key=dedup_key or None,
            )
            reason = ""
            if scheduled_for != candidate:
                reason = f"moved out of quiet hours to {scheduled_for.isoformat()}"
            record_change(message, from_state="", actor=actor, reason=reason)
            if suppression:
                suppress_message(message, suppression, actor)
    except IntegrityError:
        # A concurrent call created it first (unique step+template / dedup key).
        existing = _existing(
            organization_id=organization_id,
            step_instance_id=step_instance_id,
            template_key=template_key,
            dedup_key=dedup_key,
        )
        if existing is None:
            raise
        return existing, False
    if message.state == MessageState.SCHEDULED and message.scheduled_for <= timezone.now():
        transaction.on_commit(kick_dispatcher)
    return message, True


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
