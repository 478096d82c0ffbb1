"""Audits password changes through Django's `password_changed` validator hook.

Django calls every validator's `password_changed()` after a user with a new
password is saved, whichever way it was set (our form, the admin, the
`changepassword` command), so this one hook sees them all. A new account's
first password (the previous one was empty or unusable) is part of creating
the account, not a change.
"""

from __future__ import annotations


class AuditPasswordChange:
    def validate(self, password, user=None):
        return None  # validates nothing

    def get_help_text(self):
        return ""

    def password_changed(self, password, user=None):
        if user is None or user.pk is None or getattr(user, "_baton_first_password", True):
            return
        from programs.security.audit import PASSWORD_CHANGED, audit_access
        from programs.security.request_meta import current_request

        request = current_request()
        request_user = getattr(request, "user", None)
        by_self = (
            request_user is None or not request_user.is_authenticated or request_user.pk == user.pk
        )
        audit_access(
            request=request,
            action=PASSWORD_CHANGED,
            actor=user if by_self else request_user,
            object_type="auth.user",
            object_id=user.pk,
            metadata={"user": user.get_username(), "by_self": by_self},
        )
        user._baton_first_password = True  # one row per change, even if saved again
