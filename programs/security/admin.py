"""Lifting a login lockout in the admin is audited (auth.lockout_lifted)."""

from axes.admin import AccessAttemptAdmin
from axes.models import AccessAttempt
from django.contrib import admin, messages

from programs.security.request_meta import request_meta
from programs.security.services import lockout_lift

if admin.site.is_registered(AccessAttempt):
    admin.site.unregister(AccessAttempt)


@admin.register(AccessAttempt)
class AuditedAccessAttemptAdmin(AccessAttemptAdmin):
    actions = ["lift_lockout"]

    @admin.action(description="Lift lockout (audited)", permissions=["delete"])
    def lift_lockout(self, request, queryset):
        count = lockout_lift(
            attempts=list(queryset), actor=request.user, meta=request_meta(request)
        )
        self.message_user(request, f"Lifted {count} lockout record(s).", messages.SUCCESS)

    def delete_model(self, request, obj):
        lockout_lift(attempts=[obj], actor=request.user, meta=request_meta(request))

    def delete_queryset(self, request, queryset):
        lockout_lift(attempts=list(queryset), actor=request.user, meta=request_meta(request))

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # "Lift lockout" does the same, audited
        return actions
