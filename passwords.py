"""Audits password changes through Django's `password_changed` validator hook.

Django calls every validator's `password_changed()` after a user with a new
password is saved, whichever way it was set (our form, the admin, the
`changepassword` command), so this one hook sees them all.
"""

from __future__ import annotations


class AuditPasswordChange:
    def validate(self, password, user=None):
        return None  # validates nothing

    def get_help_text(self):
        return ""

    def password_changed(self, password, user=None):
        if user is None or user.pk is None or getattr(user, "_baton_created", False):
            return  # a new account's first password is part of its creation
        from programs.security.audit import PASSWORD_CHANGED, audit_access
        from programs.security.request_meta import _current_request

        request = _current_request.get()
        request_user = getattr(request, "user", None) if request is not None else None
        by_self = request_user is None or getattr(request_user, "pk", None) == user.pk
        actor = user if by_self or not request_user.is_authenticated else request_user
        audit_access(
            request=request,
            action=PASSWORD_CHANGED,
            actor=actor,
            object_type="auth.user",
            object_id=user.pk,
            metadata={"user": user.get_username(), "by_self": by_self},
        )
