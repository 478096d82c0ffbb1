"""Admin for API clients (key shown once) and PHI allowances (audited)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from integrations.auth import api_client_create, api_client_revoke
from integrations.models import ApiClient, ApiPermission, ProgramPhiAllowance
from integrations.phi import phi_allowance_create, phi_allowance_delete
from programs.actors import Actor
from programs.admin_scoping import OrganizationScopedAdmin, form_changes
from programs.services import audit_record


class ApiClientForm(forms.ModelForm):
    def clean(self):
        """A key's programs are its organization's (the service refused
        another's during save: a 500 instead of this error)."""
        data = super().clean()
        organization = data.get("organization") or getattr(self.instance, "organization", None)
        foreign = (
            [p.slug for p in data.get("programs") or () if p.organization_id != organization.pk]
            if organization is not None
            else []
        )
        if foreign:
            self.add_error(
                "programs", f"not programs of {organization}: {', '.join(sorted(foreign))}"
            )
        return data


@admin.register(ApiClient)
class ApiClientAdmin(OrganizationScopedAdmin):
    form = ApiClientForm
    list_display = [
        "name",
        "organization",
        "prefix",
        "permission",
        "program_scopes",
        "expires_at",
        "revoked_at",
        "last_used_at",
    ]
    list_filter = ["permission", "organization"]
    list_select_related = ["organization"]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "revoked_at", "last_used_at", "created_by", "created_at"]
    filter_horizontal = ["programs"]
    actions = ["revoke_keys"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("programs")

    @admin.display(description="Program scopes")
    def program_scopes(self, obj):
        names = sorted(p.slug for p in obj.programs.all())
        return ", ".join(names) if names else "all programs"

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return [*self.readonly_fields, "organization"]
        return self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: the audit trail keeps pointing at the row

    def save_model(self, request, obj, form, change):
        actor = Actor.for_user(request.user)
        if not change:
            client, raw_key = api_client_create(
                organization=obj.organization,
                name=obj.name,
                actor=actor,
                read_only=obj.permission == ApiPermission.READ,
                expires_at=obj.expires_at,
                # the scope belongs in the creation's audit row: saved after
                # it (save_related), the row said "all programs"
                programs=list(form.cleaned_data.get("programs") or []),
            )
            obj.pk = client.pk
            obj.prefix = client.prefix
            obj.key_hash = client.key_hash
            obj._state.adding = False
            messages.warning(
                request,
                format_html(
                    "API key for {}: <code>{}</code> — copy it now; it is shown only once.",
                    client.name,
                    raw_key,
                ),
            )
            return
        super().save_model(request, obj, form, change)
        audit_record(
            actor=actor,
            action="api_client.updated",
            target=obj,
            organization=obj.organization_id,
            metadata={"changed": form_changes(form)},
        )

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_keys(self, request, queryset):
        actor = Actor.for_user(request.user)
        for client in queryset:
            api_client_revoke(client_id=client.pk, actor=actor, reason="revoked in admin")
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)


class ProgramPhiAllowanceForm(forms.ModelForm):
    # A reason is read in the audit trail and on the allowance: a paragraph,
    # not a document (any length was accepted).
    reason = forms.CharField(max_length=2000, widget=forms.Textarea)

    class Meta:
        model = ProgramPhiAllowance
        fields = ["program", "json_path", "reason"]


@admin.register(ProgramPhiAllowance)
class ProgramPhiAllowanceAdmin(OrganizationScopedAdmin):
    form = ProgramPhiAllowanceForm
    organization_field = "program__organization"
    list_display = ["program", "json_path", "created_by", "created_at"]
    list_select_related = ["program"]
    readonly_fields = ["created_by", "created_at"]

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        allowance = phi_allowance_create(
            program=obj.program,
            json_path=obj.json_path,
            reason=obj.reason,
            actor=Actor.for_user(request.user),
        )
        obj.pk = allowance.pk
        obj._state.adding = False

    def delete_model(self, request, obj):
        phi_allowance_delete(allowance_id=obj.pk, actor=Actor.for_user(request.user))

    def delete_queryset(self, request, queryset):
        for allowance in queryset:
            self.delete_model(request, allowance)
