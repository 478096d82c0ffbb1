"""Organization scoping: a user sees and acts only within their organizations.

Every queryset that reaches a person goes through `scope_queryset`, in the
admin, the console and anywhere else. Superusers see all.
"""

from programs.models import Membership, Organization


def roles_for(user) -> dict[int, str]:
    """{organization id: role} of `user`'s memberships (empty when signed
    out). Read once per user object, i.e. once per request."""
    if user is None or not user.is_authenticated:
        return {}
    cached = getattr(user, "_baton_roles", None)
    if cached is None:
        cached = dict(Membership.objects.filter(user=user).values_list("organization_id", "role"))
        user._baton_roles = cached
    return cached


def organization_ids_for(user) -> set[int] | None:
    """The organizations `user` belongs to, or None for "all" (superusers)."""
    if user is None or not user.is_authenticated:
        return set()
    if user.is_superuser:
        return None
    return set(roles_for(user))


def organizations_for(user):
    ids = organization_ids_for(user)
    qs = Organization.objects.all()
    return qs if ids is None else qs.filter(pk__in=ids)


def scope_queryset(queryset, user, organization_field="organization"):
    """Filter `queryset` to rows of the user's organizations."""
    ids = organization_ids_for(user)
    if ids is None:
        return queryset
    return queryset.filter(**{f"{organization_field}__in": ids})


def role_in(user, organization_id) -> str | None:
    if user is None or not user.is_authenticated:
        return None
    if user.is_superuser:
        return "admin"
    membership = Membership.objects.filter(user=user, organization_id=organization_id).first()
    return membership.role if membership else None


def user_can_access_organization(user, organization_id) -> bool:
    ids = organization_ids_for(user)
    return ids is None or organization_id in ids
