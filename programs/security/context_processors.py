"""What the console's navigation needs to know about the signed-in user."""

from programs.security.selectors import can_read_audit


def navigation(request):
    """`can_read_audit`: show the Audit trail link only to those it opens
    for (auditors and admins of an organization, superusers). Evaluated when
    a template asks, from the memberships the request reads anyway."""
    user = getattr(request, "user", None)
    return {"can_read_audit": lambda: user is not None and can_read_audit(user)}
