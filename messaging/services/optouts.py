"""Opt-outs per participant and channel."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from integrations.outbox import outbox_write
from messaging.models import PENDING_STATES, Channel, Message, OptOut, SuppressionReason
from messaging.services.messages import suppress_message
from programs.actors import as_actor
from programs.services import audit_record


def opt_out_record(
    *, organization, participant_ref: str, channel: str, source: str, actor, message=None
) -> tuple[OptOut, bool]:
    """Record that the participant opted out of `channel`; return (opt_out, created).

    Idempotent: a repeat returns the existing row and changes nothing (a
    unique constraint backs this under concurrency). A new opt-out is audited
    as `messaging.opt_out.recorded`, emits `messaging.participant.opted_out`,
    and suppresses the participant's scheduled and queued messages on that channel.
    """
    if channel not in Channel.values:
        raise ValueError(f"unknown channel {channel!r}; one of: {', '.join(Channel.values)}")
    if not participant_ref:
        raise ValueError("participant_ref is required")
    actor = as_actor(actor)
    organization_id = getattr(organization, "pk", organization)
    with transaction.atomic():
        try:
            with transaction.atomic():
                opt_out = OptOut.objects.create(
                    organization_id=organization_id,
                    participant_ref=participant_ref,
                    channel=channel,
                    source=source[:200],
                    message=message,
                )
        except IntegrityError:
            existing = OptOut.objects.get(
                organization_id=organization_id, participant_ref=participant_ref, channel=channel
            )
            return existing, False
        audit_record(
            actor=actor,
            action="messaging.opt_out.recorded",
            target=opt_out,
            organization=organization_id,
            reason=f"opted out of {channel} via {source}",
            metadata={
                "participant_ref": participant_ref,
                "channel": channel,
                "message_id": getattr(message, "pk", None),
            },
        )
        outbox_write(
            organization=organization_id,
            event_type_name="messaging.participant.opted_out",
            payload={
                "participant_ref": participant_ref,
                "channel": channel,
                "source": source[:200],
                "message_id": getattr(message, "pk", None),
                "occurred_at": opt_out.created_at.isoformat(),
            },
        )
        for pending in Message.objects.select_for_update().filter(
            organization_id=organization_id,
            participant_ref=participant_ref,
            channel=channel,
            state__in=PENDING_STATES,
        ):
            suppress_message(pending, SuppressionReason.OPTED_OUT, actor)
    return opt_out, True


def opt_out_revoke(*, opt_out_id: int, actor, reason: str) -> None:
    """Remove an opt-out (the participant opted back in, e.g. replied START).
    A reason is required; audited as `messaging.opt_out.revoked`, emits
    `messaging.participant.opted_in`. Suppressed messages stay suppressed."""
    if not reason or not reason.strip():
        raise ValueError("a reason is required to revoke an opt-out")
    actor = as_actor(actor)
    with transaction.atomic():
        opt_out = OptOut.objects.select_for_update().get(pk=opt_out_id)
        audit_record(
            actor=actor,
            action="messaging.opt_out.revoked",
            target=opt_out,
            organization=opt_out.organization_id,
            reason=reason,
            metadata={"participant_ref": opt_out.participant_ref, "channel": opt_out.channel},
        )
        outbox_write(
            organization=opt_out.organization_id,
            event_type_name="messaging.participant.opted_in",
            payload={"participant_ref": opt_out.participant_ref, "channel": opt_out.channel},
        )
        opt_out.delete()
