"""Program lifecycle and versioned definitions."""

from __future__ import annotations

from datetime import time

from django.db import transaction
from django.utils import timezone
from django_fsm import can_proceed

from programs.definitions import validate_definition
from programs.errors import TransitionNotAllowed
from programs.models import Organization, Program, ProgramVersion, definition_checksum
from programs.services.audit import audit_record


def _allowed(program) -> list[str]:
    return [t.name for t in program.get_available_state_transitions()]


def _transition(program_id: int, name: str, *, actor, reason: str = "") -> Program:
    with transaction.atomic():
        program = Program.objects.select_for_update().get(pk=program_id)
        method = getattr(program, name)
        if not can_proceed(method):
            error = TransitionNotAllowed(
                obj_label=f"program {program.slug}",
                transition=name,
                current_state=program.state,
                allowed=_allowed(program),
            )
            if name == "activate" and can_proceed(method, check_conditions=False):
                # The state allows it; the condition is what is missing.
                error.args = (
                    f"cannot activate program {program.slug}: it has no published definition "
                    "yet (load one with `manage.py load_program`, see docs/participants.md)",
                )
            raise error
        from_state = program.state
        method()
        program.save(update_fields=["state", "updated_at"])
        audit_record(
            actor=actor,
            action=f"program.{name}",
            target=program,
            organization=program.organization_id,
            from_state=from_state,
            to_state=program.state,
            reason=reason,
        )
    return program


def program_activate(*, program_id: int, actor, reason: str = "") -> Program:
    """draft -> active (needs a published version). Audited as `program.activate`."""
    return _transition(program_id, "activate", actor=actor, reason=reason)


def program_pause(*, program_id: int, actor, reason: str = "") -> Program:
    """active -> paused. Audited as `program.pause`."""
    return _transition(program_id, "pause", actor=actor, reason=reason)


def program_resume(*, program_id: int, actor, reason: str = "") -> Program:
    """paused -> active. Audited as `program.resume`."""
    return _transition(program_id, "resume", actor=actor, reason=reason)


def program_retire(*, program_id: int, actor, reason: str = "") -> Program:
    """active|paused -> retired (terminal). Audited as `program.retire`."""
    return _transition(program_id, "retire", actor=actor, reason=reason)


@transaction.atomic
def program_version_publish(*, version_id: int, actor) -> ProgramVersion:
    """Publish a draft version; from then on it is immutable."""
    version = ProgramVersion.objects.select_for_update().get(pk=version_id)
    if version.is_published:
        return version
    validate_definition(version.definition)
    version.published_at = timezone.now()
    version.save()
    audit_record(
        actor=actor,
        action="program_version.published",
        target=version,
        organization=version.program.organization_id,
        metadata={"program": version.program.slug, "number": version.number},
    )
    return version


def _parse_time(value: str | None) -> time | None:
    if not value:
        return None
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


@transaction.atomic
def program_load_definition(
    *, organization: Organization, document: dict, actor, publish: bool = True
) -> tuple[ProgramVersion, bool]:
    """Create or version a program from a definition document.

    Validates first (DefinitionError names each bad path; nothing is written).
    If the newest version already holds an identical definition, returns it
    with created=False. Otherwise adds version N+1, published unless
    `publish=False`. Program settings (name, timezone, quiet hours) follow the
    document. Audited as `program.created` / `program_version.created`.
    """
    validate_definition(document)
    meta = document["program"]
    quiet = meta.get("quiet_hours") or {}
    program, program_created = Program.objects.select_for_update().get_or_create(
        organization=organization,
        slug=meta["slug"],
        defaults={"name": meta["name"], "timezone": meta.get("timezone", "UTC")},
    )
    program.name = meta["name"]
    program.timezone = meta.get("timezone", "UTC")
    program.quiet_hours_start = _parse_time(quiet.get("start"))
    program.quiet_hours_end = _parse_time(quiet.get("end"))
    program.save(
        update_fields=["name", "timezone", "quiet_hours_start", "quiet_hours_end", "updated_at"]
    )
    if program_created:
        audit_record(
            actor=actor,
            action="program.created",
            target=program,
            organization=organization,
            to_state=program.state,
        )

    latest = program.versions.order_by("-number").first()
    if latest and latest.checksum == definition_checksum(document):
        if publish and not latest.is_published:
            program_version_publish(version_id=latest.pk, actor=actor)
            latest.refresh_from_db()
        return latest, False
    version = ProgramVersion.objects.create(
        program=program,
        number=(latest.number + 1) if latest else 1,
        definition=document,
        created_by=getattr(actor, "label", str(actor)),
    )
    audit_record(
        actor=actor,
        action="program_version.created",
        target=version,
        organization=organization,
        metadata={"program": program.slug, "number": version.number},
    )
    if publish:
        version = program_version_publish(version_id=version.pk, actor=actor)
    return version, True
