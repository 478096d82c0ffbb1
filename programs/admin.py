from datetime import timedelta

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html

from programs.actors import Actor
from programs.admin_scoping import (
    AuditedAdminWrites,
    OrganizationScopedAdmin,
    ReadOnlyAdmin,
    ReadOnlyTabularInline,
    ServiceTransitionAdmin,
    run_per_item,
)
from programs.models import (
    AuditEvent,
    JobHeartbeat,
    Membership,
    OpsException,
    Organization,
    Program,
    ProgramVersion,
)
from programs.services import (
    exception_claim,
    exception_dismiss,
    exception_release,
    exception_resolve,
    exception_retry,
    exception_snooze,
    exception_wake,
    membership_grant,
    membership_revoke,
    program_activate,
    program_pause,
    program_resume,
    program_retire,
)
from programs.tenancy import organization_ids_for


def _actor(request):
    return Actor.for_user(request.user)


def _reason(request):
    return request.POST.get("reason", "").strip()


@admin.register(Organization)
class OrganizationAdmin(AuditedAdminWrites, admin.ModelAdmin):
    audit_name = "organization"
    list_display = ["name", "slug", "require_mfa", "created_at"]
    search_fields = ["name", "slug"]

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        ids = organization_ids_for(request.user)
        return qs if ids is None else qs.filter(pk__in=ids)


@admin.register(Membership)
class MembershipAdmin(OrganizationScopedAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", "organization"]
    search_fields = ["user__username"]
    autocomplete_fields = ["user"]

    # Read-only, Django shows the user as a link to the user's admin page,
    # without asking whether the reader may open it (only superusers may):
    # a 403 behind every membership. Such readers see the name.
    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if self._user_page_closed(request, obj):
            return ["member" if name == "user" else name for name in fields]
        return fields

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if self._user_page_closed(request, obj):
            readonly.append("member")
        return readonly

    @admin.display(description="User")
    def member(self, membership):
        return membership.user.get_username() if membership and membership.user_id else "—"

    # Writes go through the services, which keep the user's role groups (the
    # model permissions) in step with their memberships and audit the change:
    # saved directly, a lead demoted to auditor kept the lead's permissions.
    def save_model(self, request, obj, form, change):
        actor = Actor.for_user(request.user)
        if change and {"user", "organization"} & set(form.changed_data):
            membership_revoke(membership_id=obj.pk, actor=actor, reason="moved in the admin")
        granted = membership_grant(
            user=obj.user, organization=obj.organization, role=obj.role, actor=actor
        )
        obj.pk = granted.pk
        obj._state.adding = False

    def delete_model(self, request, obj):
        membership_revoke(membership_id=obj.pk, actor=Actor.for_user(request.user))

    def delete_queryset(self, request, queryset):
        for membership in queryset:
            self.delete_model(request, membership)

    def _user_page_closed(self, request, obj) -> bool:
        user_admin = self.admin_site._registry.get(get_user_model())
        return not self.has_change_permission(request, obj) and (
            user_admin is None or not user_admin.has_view_permission(request)
        )


class ProgramVersionInline(ReadOnlyTabularInline):
    model = ProgramVersion
    fields = ["number", "published_at", "created_by", "checksum"]
    readonly_fields = fields
    show_change_link = True


@admin.register(Program)
class ProgramAdmin(AuditedAdminWrites, ServiceTransitionAdmin, OrganizationScopedAdmin):
    audit_name = "program"
    list_display = ["name", "organization", "slug", "state", "timezone", "updated_at"]
    list_filter = ["state", "organization"]
    search_fields = ["name", "slug"]
    readonly_fields = ["state", "created_at", "updated_at"]
    inlines = [ProgramVersionInline]
    reason_transitions = ("pause", "retire")
    transition_services = {
        "activate": ("Activate", lambda p, r: program_activate(program_id=p.pk, actor=_actor(r))),
        "pause": (
            "Pause",
            lambda p, r: program_pause(program_id=p.pk, actor=_actor(r), reason=_reason(r)),
        ),
        "resume": ("Resume", lambda p, r: program_resume(program_id=p.pk, actor=_actor(r))),
        "retire": (
            "Retire",
            lambda p, r: program_retire(program_id=p.pk, actor=_actor(r), reason=_reason(r)),
        ),
    }


@admin.register(ProgramVersion)
class ProgramVersionAdmin(OrganizationScopedAdmin):
    organization_field = "program__organization"
    list_display = ["program", "number", "published_at", "created_by", "created_at"]
    list_filter = ["program"]
    list_select_related = ["program"]
    readonly_fields = [
        "program",
        "number",
        "definition",
        "checksum",
        "published_at",
        "created_by",
        "created_at",
    ]

    def has_add_permission(self, request):
        return False  # versions come from `load_program` / the loader service

    def has_change_permission(self, request, obj=None):
        return False  # immutable once published; drafts are replaced by loading again

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin, OrganizationScopedAdmin):
    list_display = [
        "created_at",
        "actor_label",
        "action",
        "object_type",
        "object_id",
        "from_state",
        "to_state",
        "request_id",
    ]
    list_filter = ["actor_kind", "action", "object_type"]
    search_fields = ["=object_id", "=request_id", "actor_label", "action"]
    date_hierarchy = None
    show_full_result_count = False
    list_per_page = 50

    def get_actions(self, request):
        return {}  # no bulk delete on an append-only trail


@admin.action(description="Claim selected items", permissions=["change"])
def claim_selected(modeladmin, request, queryset):
    run_per_item(
        request, queryset, lambda e: exception_claim(exception_id=e.pk, actor=_actor(request))
    )


@admin.action(description="Release selected items", permissions=["change"])
def release_selected(modeladmin, request, queryset):
    run_per_item(
        request, queryset, lambda e: exception_release(exception_id=e.pk, actor=_actor(request))
    )


@admin.action(description="Snooze selected items for 1 day", permissions=["bulk_act"])
def snooze_selected(modeladmin, request, queryset):
    until = timezone.now() + timedelta(days=1)
    run_per_item(
        request,
        queryset,
        lambda e: exception_snooze(
            exception_id=e.pk, actor=_actor(request), until=until, reason="bulk snooze (admin)"
        ),
    )


@admin.action(description="Retry selected items", permissions=["bulk_act"])
def retry_selected(modeladmin, request, queryset):
    run_per_item(
        request, queryset, lambda e: exception_retry(exception_id=e.pk, actor=_actor(request))
    )


class CappedCountPaginator(Paginator):
    """Counts at most CAP rows (COUNT over a LIMITed subquery), so a changelist
    over a million items never runs a full COUNT(*); beyond the cap the admin
    shows "10000 results" and pages up to it, and search/filters narrow it."""

    CAP = 10_000

    @cached_property
    def count(self):
        qs = self.object_list
        if hasattr(qs, "values"):
            return qs.order_by().values("pk")[: self.CAP].count()
        return min(len(qs), self.CAP)


class KindFilter(admin.SimpleListFilter):
    """Kinds from the registry: the default filter would run SELECT DISTINCT
    over the whole table on every changelist view."""

    title = "kind"
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        from programs.registries import registry

        return sorted((k.key, k.label) for k in registry.exception_kinds.values())

    def queryset(self, request, queryset):
        return queryset.filter(kind=self.value()) if self.value() else queryset


class OverdueFilter(admin.SimpleListFilter):
    title = "SLA"
    parameter_name = "sla"

    def lookups(self, request, model_admin):
        return [("overdue", "Overdue (active, past due)"), ("ontime", "Within SLA")]

    def queryset(self, request, queryset):
        now = timezone.now()
        active = ["open", "claimed", "snoozed"]
        if self.value() == "overdue":
            return queryset.filter(state__in=active, due_by__lt=now)
        if self.value() == "ontime":
            return queryset.filter(state__in=active, due_by__gte=now)
        return queryset


@admin.register(OpsException)
class OpsExceptionAdmin(ServiceTransitionAdmin, OrganizationScopedAdmin):
    list_display = [
        "id",
        "console_link",
        "title",
        "kind",
        "severity",
        "state",
        "assignee",
        "occurrences",
        "first_seen_at",
        "due_by",
        "program",
    ]
    list_filter = ["state", OverdueFilter, KindFilter, "severity", "program"]
    # Newest first walks the primary key index; the model's priority order
    # would sort every row of the organization on each page view.
    ordering = ["-id"]
    search_fields = ["=id", "title", "dedup_key", "=subject_id"]
    list_select_related = ["assignee", "program"]
    list_per_page = 50
    show_full_result_count = False
    paginator = CappedCountPaginator
    readonly_fields = [
        "organization",
        "program",
        "kind",
        "severity",
        "priority",
        "title",
        "detail",
        "subject_type",
        "subject_id",
        "dedup_key",
        "occurrences",
        "first_seen_at",
        "last_seen_at",
        "due_by",
        "state",
        "assignee",
        "snoozed_until",
        "resolution_note",
        "resolved_at",
        "resolved_by",
        "auto_resolved",
        "context",
    ]
    actions = [claim_selected, release_selected, snooze_selected, retry_selected]
    reason_transitions = ("resolve", "dismiss")
    transition_services = {
        "claim": ("Claim", lambda e, r: exception_claim(exception_id=e.pk, actor=_actor(r))),
        "release": ("Release", lambda e, r: exception_release(exception_id=e.pk, actor=_actor(r))),
        "wake": ("Wake now", lambda e, r: exception_wake(exception_id=e.pk, actor=_actor(r))),
        "snooze": (
            "Snooze 1 day",
            lambda e, r: exception_snooze(
                exception_id=e.pk, actor=_actor(r), until=timezone.now() + timedelta(days=1)
            ),
        ),
        "resolve": (
            "Resolve",
            lambda e, r: exception_resolve(exception_id=e.pk, actor=_actor(r), note=_reason(r)),
        ),
        "dismiss": (
            "Dismiss",
            lambda e, r: exception_dismiss(exception_id=e.pk, actor=_actor(r), reason=_reason(r)),
        ),
    }

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Console")
    def console_link(self, obj):
        return format_html('<a href="{}">open</a>', reverse("console:item", args=[obj.pk]))

    def has_bulk_act_permission(self, request):
        return request.user.has_perm("programs.bulk_act_opsexception")


@admin.register(JobHeartbeat)
class JobHeartbeatAdmin(ReadOnlyAdmin):
    list_display = ["name", "last_started_at", "last_finished_at", "last_ok"]
