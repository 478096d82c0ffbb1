from django.contrib import admin
from django.db import models
from django.utils.html import format_html, linebreaks

from messaging.models import (
    CallbackLog,
    ChannelConnector,
    Message,
    MessageTemplate,
    OptOut,
)
from messaging.rendering import SAMPLE_VARIABLES, allowed_variables, render
from messaging.services import (
    message_cancel,
    message_resend,
    message_switch_channel,
    opt_out_revoke,
    template_new_version,
    template_publish,
)
from programs.actors import Actor
from programs.admin_scoping import (
    FORMFIELD_OVERRIDES,
    AuditedAdminWrites,
    OrganizationScopedAdmin,
    ReadOnlyAdmin,
    run_per_item,
)


@admin.action(description="Publish selected drafts", permissions=["change"])
def publish_selected(modeladmin, request, queryset):
    actor = Actor.for_user(request.user)
    run_per_item(request, queryset, lambda t: template_publish(template_id=t.pk, actor=actor))


@admin.action(description="Create a new draft version of selected", permissions=["add"])
def new_version_selected(modeladmin, request, queryset):
    actor = Actor.for_user(request.user)
    run_per_item(request, queryset, lambda t: template_new_version(template_id=t.pk, actor=actor))


@admin.register(MessageTemplate)
class MessageTemplateAdmin(AuditedAdminWrites, OrganizationScopedAdmin):
    audit_name = "message_template"
    list_display = ["key", "program", "channel", "locale", "version", "published_at"]
    list_filter = ["channel", "locale", "program"]
    search_fields = ["key"]
    list_select_related = ["program"]
    actions = [publish_selected, new_version_selected]
    fields = [
        "organization",
        "program",
        "key",
        "channel",
        "locale",
        "version",
        "subject",
        "body",
        "links",
        "complete_on",
        "expires_after",
        "allowed_placeholders",
        "preview",
        "published_at",
        "created_by",
    ]

    def get_readonly_fields(self, request, obj=None):
        always = ["allowed_placeholders", "preview", "published_at", "created_by", "version"]
        if obj is not None and obj.is_published:
            return list(self.fields)  # published: immutable
        return always

    @admin.display(description="Allowed placeholders")
    def allowed_placeholders(self, obj):
        links = obj.links if obj and isinstance(obj.links, dict) else {}
        return ", ".join(f"{{{{ {name} }}}}" for name in allowed_variables(links))

    @admin.display(description="Preview (sample variables)")
    def preview(self, obj):
        if obj is None or not obj.body:
            return "—"
        variables = {**SAMPLE_VARIABLES}
        for name, url in (obj.links or {}).items():
            variables[f"link_{name}"] = url
        subject = render(obj.subject, variables)
        body = render(obj.body, variables)
        if subject:
            return format_html("<strong>{}</strong>{}", subject, linebreaks(body, autoescape=True))
        return format_html("{}", linebreaks(body, autoescape=True))

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = Actor.for_user(request.user).label[:200]
            from django.db.models import Max

            latest = MessageTemplate.objects.filter(
                program=obj.program, key=obj.key, channel=obj.channel, locale=obj.locale
            ).aggregate(v=Max("version"))["v"]
            obj.version = (latest or 0) + 1
        super().save_model(request, obj, form, change)  # audited (AuditedAdminWrites)

    def has_delete_permission(self, request, obj=None):
        return obj is None or not obj.is_published


@admin.action(
    description="Resend selected (failed, undeliverable, suppressed)", permissions=["resend"]
)
def resend_selected(modeladmin, request, queryset):
    actor = Actor.for_user(request.user)
    run_per_item(
        request, queryset, lambda m: message_resend(message_id=m.pk, actor=actor, reason="admin")
    )


@admin.action(description="Switch channel and resend selected", permissions=["resend"])
def switch_selected(modeladmin, request, queryset):
    actor = Actor.for_user(request.user)
    run_per_item(request, queryset, lambda m: message_switch_channel(message_id=m.pk, actor=actor))


@admin.action(description="Cancel selected (scheduled or queued)", permissions=["change"])
def cancel_selected(modeladmin, request, queryset):
    actor = Actor.for_user(request.user)
    run_per_item(
        request,
        queryset,
        lambda m: message_cancel(message_id=m.pk, actor=actor, reason="canceled in admin"),
    )


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin, OrganizationScopedAdmin):
    list_display = [
        "id",
        "template_key",
        "channel",
        "state",
        "participant_ref",
        "enrollment_id",
        "scheduled_for",
        "attempts",
        "program",
    ]
    list_filter = ["state", "channel", "program", "kind", "suppression_reason"]
    search_fields = ["=id", "=participant_ref", "=enrollment_id", "template_key"]
    list_select_related = ["program"]
    show_full_result_count = False
    list_per_page = 50
    actions = [resend_selected, switch_selected, cancel_selected]

    def has_resend_permission(self, request):
        return request.user.has_perm("messaging.resend_message") or request.user.has_perm(
            "messaging.change_message"
        )

    def has_change_permission(self, request, obj=None):
        # Actions only (they call services); the form itself stays read-only.
        return obj is None and request.user.has_perm("messaging.change_message")


@admin.action(
    description="Revoke selected opt-outs (participant opted back in)", permissions=["delete"]
)
def revoke_selected(modeladmin, request, queryset):
    actor = Actor.for_user(request.user)
    run_per_item(
        request,
        queryset,
        lambda o: opt_out_revoke(opt_out_id=o.pk, actor=actor, reason="revoked in admin"),
    )


@admin.register(OptOut)
class OptOutAdmin(OrganizationScopedAdmin):
    list_display = ["participant_ref", "channel", "source", "organization", "created_at"]
    list_filter = ["channel", "organization"]
    search_fields = ["=participant_ref"]
    readonly_fields = [
        "organization",
        "participant_ref",
        "channel",
        "source",
        "message",
        "created_at",
    ]
    actions = [revoke_selected]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # revoke goes through the audited service
        return actions

    def has_delete_permission(self, request, obj=None):
        return request.user.has_perm("messaging.delete_optout")

    def delete_model(self, request, obj):
        opt_out_revoke(opt_out_id=obj.pk, actor=Actor.for_user(request.user), reason="admin")


@admin.register(ChannelConnector)
class ChannelConnectorAdmin(AuditedAdminWrites, OrganizationScopedAdmin):
    audit_name = "messaging.connector"
    list_display = ["name", "organization", "kind", "enabled", "is_default", "masked_secret"]
    list_filter = ["kind", "enabled", "organization"]
    search_fields = ["name", "slug"]
    readonly_fields = ["created_at"]
    formfield_overrides = {**FORMFIELD_OVERRIDES, models.URLField: {"assume_scheme": "https"}}

    @admin.display(description="Secret")
    def masked_secret(self, obj):
        from integrations.signing import mask_secret

        return mask_secret(obj.secret) if obj else "—"

    @admin.display(description="Previous secret")
    def masked_previous_secret(self, obj):
        from integrations.signing import mask_secret

        return mask_secret(obj.previous_secret) if obj and obj.previous_secret else "—"

    # The secret signs the vendor's callbacks: whoever reads it can forge
    # "delivered" or "opted out". Read-only viewers (coordinators, auditors)
    # see it masked, like a webhook endpoint's.
    _MASKED = {"secret": "masked_secret", "previous_secret": "masked_previous_secret"}

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if self.has_change_permission(request, obj):
            return fields
        return [self._MASKED.get(name, name) for name in fields]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if not self.has_change_permission(request, obj):
            readonly += self._MASKED.values()
        return readonly


@admin.register(CallbackLog)
class CallbackLogAdmin(ReadOnlyAdmin, OrganizationScopedAdmin):
    organization_field = "connector__organization"
    list_display = ["created_at", "connector", "webhook_id", "event_type", "message", "outcome"]
    list_filter = ["event_type", "connector"]
    list_select_related = ["connector"]
    show_full_result_count = False
