"""Access audit: who signed in, out, failed, verified, and read what.

Rows go through `programs.services.audit_record` with the client IP, user
agent and request id of the request. Action names are a public contract
(never renamed); docs/security.md lists them.
"""

from __future__ import annotations

import functools

from programs.actors import Actor
from programs.security.request_meta import request_meta
from programs.services import audit_record

# Access events (each recorded exactly once per occurrence).
LOGIN = "auth.login"
LOGOUT = "auth.logout"
LOGIN_FAILED = "auth.login_failed"
SESSION_EXPIRED = "auth.session_expired"
LOCKED_OUT = "auth.locked_out"
LOCKOUT_LIFTED = "auth.lockout_lifted"
PASSWORD_CHANGED = "auth.password_changed"
MFA_ENROLLED = "auth.mfa_enrolled"
MFA_VERIFIED = "auth.mfa_verified"
MFA_FAILED = "auth.mfa_failed"
MFA_RECOVERY_CODES_ISSUED = "auth.mfa_recovery_codes_issued"
AUDIT_EXPORTED = "audit.exported"


def anonymous_actor(username: str) -> Actor:
    """The actor of an unauthenticated attempt: only the name they typed."""
    return Actor(kind="anonymous", id="", label=(username or "(blank)")[:200])


def audit_access(
    *,
    request,
    action: str,
    actor=None,
    organization=None,
    target=None,
    object_type: str = "",
    object_id: str | int = "",
    reason: str = "",
    metadata: dict | None = None,
):
    """Record one access event with the request's IP, user agent and request id."""
    if actor is None:
        user = getattr(request, "user", None)
        actor = user if user is not None and user.is_authenticated else anonymous_actor("")
    return audit_record(
        actor=actor,
        action=action,
        organization=organization,
        target=target,
        object_type=object_type,
        object_id=object_id,
        reason=reason,
        metadata=metadata,
        **request_meta(request).as_audit_kwargs(),
    )


def audited_read(action: str, *, object_type: str = "", object_kwarg: str | None = None):
    """Decorate a view whose successful (2xx) GET is a sensitive read.

    One audit row per successful read: the user, `action`, and the object,
    taken from `request.audited_object` if the view set it (a model instance;
    its organization is recorded too), else `object_type` plus the URL kwarg
    `object_kwarg` (default: the first kwarg). Refused or failed requests are
    not reads.

        @audited_read("participant.timeline_viewed", object_type="participants.enrollment")
        def timeline(request, pk): ...
    """

    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            response = view(request, *args, **kwargs)
            if 200 <= response.status_code < 300 and request.method in ("GET", "HEAD"):
                target = getattr(request, "audited_object", None)
                object_id = ""
                if target is None and kwargs:
                    key = object_kwarg or next(iter(kwargs))
                    object_id = kwargs.get(key, "")
                audit_access(
                    request=request,
                    action=action,
                    target=target,
                    object_type="" if target is not None else object_type,
                    object_id=object_id,
                    metadata={"path": request.path[:300]},
                )
            return response

        return wrapper

    return decorate
