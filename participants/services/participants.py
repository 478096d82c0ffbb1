"""Registering participants: an opaque reference plus operational settings."""

from __future__ import annotations

from zoneinfo import available_timezones

from django.db import IntegrityError, transaction

from integrations.outbox import outbox_write
from participants.models import Participant
from participants.services.common import require_acting_role
from programs.actors import as_actor
from programs.services import audit_record


def _validate(external_ref, timezone, tags):
    if not isinstance(external_ref, str) or not external_ref.strip():
        raise ValueError("external_ref: a non-empty opaque reference is required")
    if len(external_ref) > 200:
        raise ValueError("external_ref: at most 200 characters")
    if timezone is not None and timezone != "" and timezone not in available_timezones():
        raise ValueError(f"timezone: {timezone!r} is not a known IANA timezone")
    if tags is not None and (
        not isinstance(tags, list | tuple) or not all(isinstance(t, str) for t in tags)
    ):
        raise ValueError("tags: a list of strings is required")


def _payload(participant):
    return {
        "participant_id": participant.pk,
        "participant_ref": participant.external_ref,
        "source_system": participant.source_system,
        "timezone": participant.timezone,
        "locale": participant.locale,
        "tags": participant.tags,
    }


def participant_upsert(
    *,
    organization,
    external_ref: str,
    actor,
    source_system: str = "",
    timezone: str | None = None,
    locale: str = "",
    tags: list | None = None,
) -> tuple[Participant, bool]:
    """Create the participant for (`organization`, `external_ref`) or update it.

    On update only what is given changes: non-empty `source_system`/`locale`,
    and `timezone`/`tags` when not None. No change → no audit row, no event.
    Users need coordinator, lead or admin. Emits
    participants.participant.created / .updated; audited as participant.created
    / participant.updated. Safe under concurrent calls (unique constraint).
    """
    actor = as_actor(actor)
    _validate(external_ref, timezone, tags)
    organization_id = getattr(organization, "pk", organization)
    require_acting_role(actor, organization_id, "register participants")
    with transaction.atomic():
        participant = (
            Participant.objects.select_for_update()
            .filter(organization_id=organization_id, external_ref=external_ref)
            .first()
        )
        if participant is None:
            try:
                with transaction.atomic():
                    participant = Participant.objects.create(
                        organization_id=organization_id,
                        external_ref=external_ref,
                        source_system=source_system,
                        timezone=timezone or "",
                        locale=locale,
                        tags=list(tags or []),
                    )
            except IntegrityError:
                participant = Participant.objects.select_for_update().get(
                    organization_id=organization_id, external_ref=external_ref
                )
            else:
                audit_record(
                    actor=actor,
                    action="participant.created",
                    target=participant,
                    organization=organization_id,
                )
                outbox_write(
                    organization=organization_id,
                    event_type_name="participants.participant.created",
                    payload=_payload(participant),
                    sequence_key=f"participant:{participant.pk}",
                )
                return participant, True
        wanted = {}
        if source_system and source_system != participant.source_system:
            wanted["source_system"] = source_system
        if locale and locale != participant.locale:
            wanted["locale"] = locale
        if timezone is not None and timezone != participant.timezone:
            wanted["timezone"] = timezone
        if tags is not None and list(tags) != participant.tags:
            wanted["tags"] = list(tags)
        if wanted:
            before = {k: getattr(participant, k) for k in wanted}
            for key, value in wanted.items():
                setattr(participant, key, value)
            participant.save(update_fields=[*wanted, "updated_at"])
            audit_record(
                actor=actor,
                action="participant.updated",
                target=participant,
                organization=organization_id,
                metadata={"changed": sorted(wanted), "before": before},
            )
            outbox_write(
                organization=organization_id,
                event_type_name="participants.participant.updated",
                payload={**_payload(participant), "changed": sorted(wanted)},
                sequence_key=f"participant:{participant.pk}",
            )
        return participant, False
