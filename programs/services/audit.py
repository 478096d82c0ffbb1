"""The one way to write the audit trail."""

from __future__ import annotations

from django.utils import timezone

from config.request_id import get_request_id
from programs.actors import as_actor
from programs.models import AuditEvent


def object_type_of(obj) -> str:
    return f"{obj._meta.app_label}.{obj._meta.model_name}"


def audit_record(
    *,
    actor,
    action: str,
    organization=None,
    target=None,
    object_type: str = "",
    object_id: str | int = "",
    from_state: str = "",
    to_state: str = "",
    reason: str = "",
    metadata: dict | None = None,
    request_id: str | None = None,
    ip_address: str | None = None,
    user_agent: str = "",
) -> AuditEvent:
    """Append one audit row: who (`actor`), did what (`action`), to which object,
    from which state to which, why, under which request id, and when.

    `target` is a model instance; otherwise give `object_type`/`object_id`.
    The request id defaults to the current request's (or task's) id. Call it
    inside the transaction of the change it describes.
    """
    actor = as_actor(actor)
    if target is not None:
        object_type = object_type or object_type_of(target)
        object_id = target.pk
        if organization is None:
            # The id only: reading `target.organization` would cost a query.
            organization = getattr(target, "organization_id", None)
    organization_id = getattr(organization, "pk", organization)
    return AuditEvent.objects.create(
        created_at=timezone.now(),
        organization_id=organization_id,
        actor_kind=actor.kind,
        actor_id=actor.id,
        actor_label=actor.label[:200],
        action=action,
        object_type=object_type,
        object_id="" if object_id in (None, "") else str(object_id),
        from_state=from_state or "",
        to_state=to_state or "",
        reason=reason or "",
        request_id=request_id if request_id is not None else get_request_id(),
        ip_address=ip_address,
        user_agent=(user_agent or "")[:300],
        metadata=metadata or {},
    )
