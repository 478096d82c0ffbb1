"""Who may do what in the console.

A membership gives one role per organization. Coordinators (and leads and
admins) work items of their organizations; leads and admins also bulk act
and reassign; auditors only read. Organization scoping itself comes from
programs.tenancy: another organization's item is a 404, never a 403.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied

from programs.models import Membership

WORK_ROLES = {"coordinator", "lead", "admin"}
LEAD_ROLES = {"lead", "admin"}


class ConsoleAccess:
    """The user's role per organization, read once per request."""

    def __init__(self, user):
        self.user = user
        self.superuser = bool(user.is_superuser)
        self.roles: dict[int, str] = dict(
            Membership.objects.filter(user=user).values_list("organization_id", "role")
        )

    def role(self, organization_id) -> str | None:
        if self.superuser:
            return "admin"
        return self.roles.get(organization_id)

    def can_work(self, organization_id) -> bool:
        return self.role(organization_id) in WORK_ROLES

    def can_lead(self, organization_id) -> bool:
        return self.role(organization_id) in LEAD_ROLES

    @property
    def work_org_ids(self) -> set[int] | None:
        """Organizations where the user works items; None means all (superuser)."""
        if self.superuser:
            return None
        return {o for o, r in self.roles.items() if r in WORK_ROLES}

    @property
    def lead_org_ids(self) -> set[int] | None:
        if self.superuser:
            return None
        return {o for o, r in self.roles.items() if r in LEAD_ROLES}

    @property
    def can_work_anywhere(self) -> bool:
        return self.superuser or bool(self.work_org_ids)

    @property
    def is_lead_anywhere(self) -> bool:
        return self.superuser or bool(self.lead_org_ids)

    def require_work(self, organization_id):
        if not self.can_work(organization_id):
            raise PermissionDenied("read-only access: your role cannot act on this item")

    def require_lead(self, organization_id):
        if not self.can_lead(organization_id):
            raise PermissionDenied("only a lead can do this")


def console_access(request) -> ConsoleAccess:
    access = getattr(request, "_console_access", None)
    if access is None:
        access = ConsoleAccess(request.user)
        request._console_access = access
    return access
