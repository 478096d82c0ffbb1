"""The operations exception queue: raise, deduplicate, work and close items.

Each service locks the item, checks the transition, changes it, saves, and
writes one audit row, all in one transaction. Opening and resolving also
send `programs.signals.exception_opened/resolved`, inside the transaction,
so integrations can write outbox events that commit with the change.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django_fsm import can_proceed

from programs.actors import Actor, as_actor
from programs.errors import PermissionDenied, TransitionNotAllowed
from programs.models import (
    ACTIVE_EXCEPTION_STATES,
    SEVERITY_RANK,
    ExceptionState,
    OpsException,
)
from programs.registries import exception_kind, registry, retry_actions_for
from programs.services.audit import audit_record
from programs.signals import exception_opened, exception_resolved

logger = logging.getLogger(__name__)


def _allowed(item: OpsException) -> list[str]:
    return [t.name for t in item.get_available_state_transitions()]


def _refuse(item: OpsException, transition: str, why: str = ""):
    error = TransitionNotAllowed(
        obj_label=f"exception #{item.pk}",
        transition=transition,
        current_state=item.state,
        allowed=_allowed(item),
    )
    if why or not item.is_active:
        # Said to a coordinator, not a state machine: "it is already
        # dismissed" rather than "allowed: none (terminal state)".
        error.args = (f"cannot {transition} #{item.pk}: {why or f'it is already {item.state}'}",)
    raise error


def _lock(exception_id: int) -> OpsException:
    return OpsException.objects.select_for_update().get(pk=exception_id)


def exception_raise(
    *,
    organization,
    kind: str,
    title: str,
    dedup_key: str,
    actor=None,
    program=None,
    severity: str | None = None,
    detail: str = "",
    subject=None,
    subject_type: str = "",
    subject_id: str | int = "",
    context: dict | None = None,
) -> tuple[OpsException, bool]:
    """Open an item, or count another occurrence of the active one.

    Never opens a second active (open/claimed/snoozed) item for the same
    organization and `dedup_key`: a repeat bumps `occurrences` and
    `last_seen_at` (a unique partial index backs this under concurrency).
    Returns (item, created). Opening is audited as `exception.opened` and
    sends `exception_opened`.
    """
    kind_info = exception_kind(kind)
    severity = severity or kind_info.default_severity
    actor = as_actor(actor or Actor.system(f"exception_raise:{kind}"))
    if subject is not None:
        subject_type = f"{subject._meta.app_label}.{subject._meta.model_name}"
        subject_id = subject.pk
    organization_id = getattr(organization, "pk", organization)
    program_id = getattr(program, "pk", program)
    now = timezone.now()

    for _attempt in range(3):
        try:
            with transaction.atomic():
                existing = (
                    OpsException.objects.select_for_update()
                    .filter(
                        organization_id=organization_id,
                        dedup_key=dedup_key,
                        state__in=ACTIVE_EXCEPTION_STATES,
                    )
                    .first()
                )
                if existing is not None:
                    OpsException.objects.filter(pk=existing.pk).update(
                        occurrences=F("occurrences") + 1, last_seen_at=now, updated_at=now
                    )
                    existing.refresh_from_db()
                    return existing, False
                item = OpsException.objects.create(
                    organization_id=organization_id,
                    program_id=program_id,
                    kind=kind,
                    severity=severity,
                    priority=SEVERITY_RANK[severity],
                    title=title[:300],
                    detail=detail,
                    subject_type=subject_type,
                    subject_id="" if subject_id in (None, "") else str(subject_id),
                    dedup_key=dedup_key[:300],
                    first_seen_at=now,
                    last_seen_at=now,
                    due_by=now + settings.BATON_EXCEPTION_SLA[severity],
                    context=context or {},
                )
                audit_record(
                    actor=actor,
                    action="exception.opened",
                    target=item,
                    organization=organization_id,
                    to_state=item.state,
                    reason=title[:500],
                    metadata={"kind": kind, "severity": severity, "dedup_key": dedup_key},
                )
                exception_opened.send(sender=OpsException, exception=item, actor=actor)
                return item, True
        except IntegrityError:
            # A concurrent raise won the unique index; loop to bump its count.
            continue
    raise RuntimeError(f"could not raise or bump exception {dedup_key!r}")


_CLOSED_ACTION = {"resolve": "resolved", "dismiss": "dismissed"}


def _close(item: OpsException, *, transition: str, actor: Actor, note: str, auto: bool):
    from_state = item.state
    if transition == "resolve":
        item.resolve(note=note, by=actor.label, auto=auto)
    else:
        item.dismiss(reason=note, by=actor.label)
    item.save()
    audit_record(
        actor=actor,
        action=f"exception.{'auto_resolved' if auto else _CLOSED_ACTION[transition]}",
        target=item,
        organization=item.organization_id,
        from_state=from_state,
        to_state=item.state,
        reason=note,
    )
    exception_resolved.send(sender=OpsException, exception=item, actor=actor)
    return item


def exception_resolve(
    *, exception_id: int, actor, note: str = "", auto: bool = False
) -> OpsException:
    """Resolve an active item. `auto=True` when the underlying condition cleared
    by itself (audited as `exception.auto_resolved`); a person must give a note."""
    actor = as_actor(actor)
    if not auto and not note.strip():
        raise ValueError("a resolution note is required")
    with transaction.atomic():
        item = _lock(exception_id)
        if not can_proceed(item.resolve):
            _refuse(item, "resolve")
        return _close(item, transition="resolve", actor=actor, note=note, auto=auto)


def exception_resolve_for(
    *, organization, dedup_key: str, actor, note: str = "condition cleared"
) -> OpsException | None:
    """Auto-resolve the active item for `dedup_key`, if any (no-op otherwise)."""
    organization_id = getattr(organization, "pk", organization)
    with transaction.atomic():
        item = (
            OpsException.objects.select_for_update()
            .filter(
                organization_id=organization_id,
                dedup_key=dedup_key,
                state__in=ACTIVE_EXCEPTION_STATES,
            )
            .first()
        )
        if item is None:
            return None
        return _close(item, transition="resolve", actor=as_actor(actor), note=note, auto=True)


def exception_dismiss(*, exception_id: int, actor, reason: str) -> OpsException:
    """Close an item as not needing action; a reason is required."""
    if not reason or not reason.strip():
        raise ValueError("a reason is required to dismiss an exception")
    with transaction.atomic():
        item = _lock(exception_id)
        if not can_proceed(item.dismiss):
            _refuse(item, "dismiss")
        return _close(item, transition="dismiss", actor=as_actor(actor), note=reason, auto=False)


def _simple_transition(exception_id, transition, actor, *, reason="", metadata=None, **kwargs):
    actor = as_actor(actor)
    with transaction.atomic():
        item = _lock(exception_id)
        method = getattr(item, transition)
        if not can_proceed(method):
            _refuse(item, transition)
        from_state = item.state
        method(**kwargs)
        item.save()
        audit_record(
            actor=actor,
            action=f"exception.{transition}",
            target=item,
            organization=item.organization_id,
            from_state=from_state,
            to_state=item.state,
            reason=reason,
            metadata=metadata or {},
        )
        return item


def exception_claim(*, exception_id: int, actor, assignee=None) -> OpsException:
    """open -> claimed, assigned to `assignee` (default: the acting user)."""
    actor = as_actor(actor)
    assignee = assignee or actor.user
    if assignee is None:
        raise PermissionDenied("only a person can claim an exception")
    return _simple_transition(
        exception_id,
        "claim",
        actor,
        assignee=assignee,
        metadata={"assignee": assignee.get_username()},
    )


def exception_claim_next(*, user, organization_ids=None, program_id=None) -> OpsException | None:
    """Hand `user` the highest-priority, oldest open item, or None.

    Uses `select_for_update(skip_locked=True)` so concurrent coordinators
    never receive the same item: each skips rows another is claiming.
    """
    actor = Actor.for_user(user)
    with transaction.atomic():
        qs = OpsException.objects.filter(state=ExceptionState.OPEN, assignee__isnull=True)
        if organization_ids is not None:
            qs = qs.filter(organization_id__in=organization_ids)
        if program_id is not None:
            qs = qs.filter(program_id=program_id)
        item = (
            qs.order_by("-priority", "first_seen_at", "pk")
            .select_for_update(skip_locked=True)
            .first()
        )
        if item is None:
            return None
        from_state = item.state
        item.claim(assignee=user)
        item.save()
        audit_record(
            actor=actor,
            action="exception.claim",
            target=item,
            organization=item.organization_id,
            from_state=from_state,
            to_state=item.state,
            metadata={"assignee": user.get_username(), "via": "claim_next"},
        )
        return item


def exception_release(*, exception_id: int, actor) -> OpsException:
    """claimed -> open, unassigned."""
    return _simple_transition(exception_id, "release", actor)


def exception_snooze(*, exception_id: int, actor, until: datetime, reason: str = ""):
    """open|claimed -> snoozed until `until`; the wake sweep reopens it."""
    if until <= timezone.now():
        raise ValueError("snooze until must be in the future")
    return _simple_transition(
        exception_id,
        "snooze",
        actor,
        until=until,
        reason=reason,
        metadata={"until": until.isoformat()},
    )


def exception_wake(*, exception_id: int, actor=None) -> OpsException:
    """snoozed -> open (the snooze ended)."""
    return _simple_transition(exception_id, "wake", actor or Actor.system("wake_snoozed"))


@transaction.atomic
def exception_reassign(*, exception_id: int, actor, assignee) -> OpsException:
    """Give an active item to `assignee` (claims it if open). Audited."""
    actor = as_actor(actor)
    item = _lock(exception_id)
    if item.state not in (ExceptionState.OPEN, ExceptionState.CLAIMED):
        _refuse(item, "reassign")
    from_state, previous = item.state, item.assignee
    if item.state == ExceptionState.OPEN:
        item.claim(assignee=assignee)
    else:
        item.assignee = assignee
    item.save()
    audit_record(
        actor=actor,
        action="exception.reassign",
        target=item,
        organization=item.organization_id,
        from_state=from_state,
        to_state=item.state,
        metadata={
            "from": previous.get_username() if previous else None,
            "to": assignee.get_username(),
        },
    )
    return item


def exception_retry(*, exception_id: int, actor, label: str | None = None) -> str:
    """Run the registered retry action for the item's kind.

    The action re-runs the failed operation (its own transaction and audit);
    this records `exception.retried` with its outcome. When the operation
    succeeds, the owning app auto-resolves the item.
    """
    actor = as_actor(actor)
    item = OpsException.objects.get(pk=exception_id)
    if not item.is_active:
        _refuse(item, "retry")
    actions = retry_actions_for(item.kind)
    if label is not None:
        actions = [a for a in actions if a.label == label]
    if not actions:
        kind = registry.exception_kinds.get(item.kind)
        _refuse(
            item,
            "retry",
            f"“{kind.label if kind else item.kind}” items have no retry action (a retry re-runs "
            "a failed delivery, message or event); resolve or dismiss it instead",
        )
    outcome = actions[0].func(item, actor)
    audit_record(
        actor=actor,
        action="exception.retried",
        target=item,
        organization=item.organization_id,
        from_state=item.state,
        to_state=item.state,
        reason=str(outcome)[:500],
        metadata={"action": actions[0].label},
    )
    return outcome
