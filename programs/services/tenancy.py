from django.contrib.auth.models import Group
from django.db import transaction

from programs.models import Membership, Organization, Role
from programs.services.audit import audit_record


@transaction.atomic
def organization_create(*, slug: str, name: str, actor) -> Organization:
    """Create an organization (idempotent on slug), audited as `organization.created`."""
    org, created = Organization.objects.get_or_create(slug=slug, defaults={"name": name})
    if created:
        audit_record(actor=actor, action="organization.created", target=org, organization=org)
    return org


@transaction.atomic
def membership_grant(*, user, organization: Organization, role: str, actor) -> Membership:
    """Give `user` a `role` in `organization` (replacing any earlier role).

    The user becomes staff (so the admin is reachable) and joins the role's
    group, which carries the model permissions. Audited as `membership.granted`.
    """
    if role not in Role.values:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(Role.values)}")
    before = Membership.objects.filter(user=user, organization=organization).first()
    membership, _ = Membership.objects.update_or_create(
        user=user, organization=organization, defaults={"role": role}
    )
    _sync_role_groups(user)
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    audit_record(
        actor=actor,
        action="membership.granted",
        target=membership,
        organization=organization,
        from_state=before.role if before else "",
        to_state=role,
        metadata={"user": user.get_username(), "role": role},
    )
    return membership


@transaction.atomic
def membership_revoke(*, membership_id: int, actor, reason: str = "") -> None:
    """Take a user's role in one organization away: the membership goes, and
    the user leaves the role's group unless another membership holds the
    same role. Audited as `membership.revoked`."""
    membership = Membership.objects.select_related("user", "organization").get(pk=membership_id)
    user = membership.user
    audit_record(
        actor=actor,
        action="membership.revoked",
        target=membership,
        organization=membership.organization,
        from_state=membership.role,
        reason=reason,
        metadata={"user": user.get_username(), "role": membership.role},
    )
    membership.delete()
    _sync_role_groups(user)


def _sync_role_groups(user) -> None:
    """The user's role groups (which carry the model permissions) are exactly
    the roles of their memberships."""
    roles_held = set(Membership.objects.filter(user=user).values_list("role", flat=True))
    user.groups.remove(*Group.objects.filter(name__in=set(Role.values) - roles_held))
    user.groups.add(*Group.objects.filter(name__in=roles_held))
