"""Reads for the auditor's view of the audit trail."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from django.db.models import Q
from django.utils import timezone

from programs.models import AuditEvent, Membership, Role
from programs.tenancy import roles_for


def audit_organization_ids(user) -> set[int] | None:
    """Organizations whose trail `user` may read: None = all (superuser)."""
    if user.is_superuser:
        return None
    return {org for org, role in roles_for(user).items() if role in (Role.AUDITOR, Role.ADMIN)}


def can_read_audit(user) -> bool:
    return user.is_authenticated and (user.is_superuser or bool(audit_organization_ids(user)))


def audit_events(user, filters: dict):
    """Audit rows visible to `user`, newest first, narrowed by `filters`.

    Visible: rows of the user's audited organizations, plus their members'
    sign-in events (those carry no organization).
    """
    qs = AuditEvent.objects.all()
    org_ids = audit_organization_ids(user)
    if org_ids is not None:
        member_ids = [
            str(pk)
            for pk in Membership.objects.filter(organization_id__in=org_ids).values_list(
                "user_id", flat=True
            )
        ]
        qs = qs.filter(
            Q(organization_id__in=org_ids)
            | Q(organization__isnull=True, actor_kind="user", actor_id__in=member_ids)
        )
    tz = timezone.get_current_timezone()
    if filters.get("date_from"):
        qs = qs.filter(created_at__gte=datetime.combine(filters["date_from"], time.min, tz))
    if filters.get("date_to") and filters["date_to"] < date.max:  # date.max: no end at all
        end = datetime.combine(filters["date_to"] + timedelta(days=1), time.min, tz)
        qs = qs.filter(created_at__lt=end)
    action = filters.get("action")
    if action:
        qs = (
            qs.filter(action__startswith=action)
            if action.endswith(".")
            else qs.filter(action=action)
        )
    if filters.get("actor"):
        qs = qs.filter(actor_label__icontains=filters["actor"])
    for field in ("object_type", "object_id", "request_id", "ip_address"):
        if filters.get(field):
            qs = qs.filter(**{field: filters[field]})
    return qs.order_by("-created_at", "-id")
