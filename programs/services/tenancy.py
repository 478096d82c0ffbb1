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
    membership, _ = Membership.objects.update_or_create(
        user=user, organization=organization, defaults={"role": role}
    )
    roles_held = set(Membership.objects.filter(user=user).values_list("role", flat=True))
    user.groups.remove(*Group.objects.filter(name__in=set(Role.values) - roles_held))
    user.groups.add(*Group.objects.filter(name__in=roles_held))
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    audit_record(
        actor=actor,
        action="membership.granted",
        target=membership,
        organization=organization,
        metadata={"user": user.get_username(), "role": role},
    )
    return membership
