"""Admin for participants, enrollments, steps and partner events.

Every change goes through participants.services: transition buttons (only
those allowed from the current state for this user's role), a "complete"
button per open step, and the enrollment's audit history on its page.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from participants.models import Enrollment, Participant, ParticipantEvent, StepInstance
from participants.services import (
    enrollment_allowed_transitions,
    enrollment_transition,
    step_complete,
)
from participants.services.common import ALL_TRANSITIONS
from programs.actors import Actor
from programs.admin_scoping import (
    OrganizationScopedAdmin,
    ReadOnlyAdmin,
    ReadOnlyTabularInline,
    ServiceTransitionAdmin,
)
from programs.errors import BatonError
from programs.models import AuditEvent

TRANSITION_LABELS = {
    "screen_eligible": "Screened eligible",
    "screen_ineligible": "Screened ineligible",
    "invite": "Invite",
    "start_onboarding": "Start onboarding",
    "activate": "Activate",
    "pause": "Pause",
    "resume": "Resume",
    "complete": "Complete",
    "withdraw": "Withdraw",
}


def _transition_service(name):
    def run(enrollment, request):
        return enrollment_transition(
            enrollment_id=enrollment.pk,
            transition=name,
            actor=Actor.for_user(request.user),
            reason=request.POST.get("reason", "").strip(),
        )

    return (TRANSITION_LABELS[name], run)


@admin.register(Participant)
class ParticipantAdmin(OrganizationScopedAdmin):
    list_display = ["external_ref", "organization", "source_system", "locale", "created_at"]
    list_filter = ["organization", "source_system", "enrollments__program"]
    search_fields = ["=external_ref"]
    readonly_fields = ["organization", "external_ref", "created_at", "updated_at"]
    list_select_related = ["organization"]

    def has_add_permission(self, request):
        return False  # participants arrive through the API / participant_upsert

    def has_change_permission(self, request, obj=None):
        return False  # settings change through participant_upsert (audited)

    def has_delete_permission(self, request, obj=None):
        return False


class AgeInStateFilter(admin.SimpleListFilter):
    title = "time in state"
    parameter_name = "age"
    BUCKETS = {
        "lt1d": ("under a day", timedelta(0), timedelta(days=1)),
        "1to7d": ("1-7 days", timedelta(days=1), timedelta(days=7)),
        "7to30d": ("7-30 days", timedelta(days=7), timedelta(days=30)),
        "gt30d": ("over 30 days", timedelta(days=30), None),
    }

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _lo, _hi) in self.BUCKETS.items()]

    def queryset(self, request, queryset):
        if self.value() not in self.BUCKETS:
            return queryset
        _label, low, high = self.BUCKETS[self.value()]
        now = timezone.now()
        queryset = queryset.filter(state_changed_at__lte=now - low)
        if high is not None:
            queryset = queryset.filter(state_changed_at__gt=now - high)
        return queryset


class StepInline(ReadOnlyTabularInline):
    model = StepInstance
    fields = [
        "stage_key",
        "title",
        "kind",
        "required",
        "state",
        "due_at",
        "completed_at",
        "completed_via",
        "completed_by",
        "complete_button",
    ]
    readonly_fields = fields
    ordering = ["id"]

    def get_fields(self, request, obj=None):
        """No Complete button for whoever may not change the enrollment (an
        auditor): the step view would refuse it with a 403."""
        fields = list(super().get_fields(request, obj))
        enrollment_admin = self.admin_site._registry.get(self.parent_model)
        if enrollment_admin is None or not enrollment_admin.has_change_permission(request, obj):
            fields.remove("complete_button")
        return fields

    @admin.display(description="")
    def complete_button(self, step):
        if step.pk is None or not step.is_open:  # an extra row of a re-rendered formset
            return ""
        url = reverse(
            "admin:participants_enrollment_complete_step", args=[step.enrollment_id, step.pk]
        )
        # Inside the change form: the button posts the form (with its CSRF
        # token) to the step view instead of the save view.
        return format_html(
            '<button type="submit" formaction="{}" formmethod="post" class="button">{}</button>',
            url,
            "Complete",
        )


@admin.register(Enrollment)
class EnrollmentAdmin(ServiceTransitionAdmin, OrganizationScopedAdmin):
    list_display = [
        "id",
        "participant",
        "program",
        "state",
        "state_changed_at",
        "time_in_state",
        "updated_at",
    ]
    list_filter = ["program", "state", AgeInStateFilter, "organization"]
    search_fields = ["=participant__external_ref"]
    list_select_related = ["participant", "program"]
    readonly_fields = [
        "organization",
        "participant",
        "program",
        "program_version",
        "state",
        "state_changed_at",
        "state_reason",
        "event_sequence",
        "last_event_at",
        "created_at",
        "updated_at",
        "audit_history",
    ]
    inlines = [StepInline]
    reason_transitions = ("withdraw", "pause", "screen_ineligible")
    transition_services = {name: _transition_service(name) for name in ALL_TRANSITIONS}

    def has_add_permission(self, request):
        return False  # enrollments open through enrollment_open (API / console)

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="In state for")
    def time_in_state(self, obj):
        delta = timezone.now() - obj.state_changed_at
        days = delta.days
        return f"{days} d" if days else f"{delta.seconds // 3600} h"

    def allowed_transitions(self, request, obj):
        if obj is None or not self.has_change_permission(request, obj):
            return []
        names = enrollment_allowed_transitions(obj, Actor.for_user(request.user))
        return [(name, TRANSITION_LABELS[name]) for name in names]

    @admin.display(description="Audit history")
    def audit_history(self, obj):
        rows = AuditEvent.objects.filter(
            object_type="participants.enrollment", object_id=str(obj.pk)
        ).order_by("-created_at", "-id")[:200]
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} → {}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f"{r.created_at:%Y-%m-%d %H:%M:%S}",
                    r.actor_label,
                    r.action,
                    r.from_state or "—",
                    r.to_state,
                    r.reason,
                    r.request_id,
                )
                for r in rows
            ),
        )
        return format_html(
            "<table><thead><tr><th>When (UTC)</th><th>Who</th><th>Action</th>"
            "<th>Change</th><th>Reason</th><th>Request</th></tr></thead><tbody>{}</tbody></table>",
            body,
        )

    def get_urls(self):
        return [
            path(
                "<path:object_id>/steps/<int:step_id>/complete/",
                self.admin_site.admin_view(self.complete_step_view),
                name="participants_enrollment_complete_step",
            ),
            *super().get_urls(),
        ]

    def complete_step_view(self, request, object_id, step_id):
        if request.method != "POST":
            raise DjangoPermissionDenied
        enrollment = self.get_object(request, unquote(object_id))  # None for a non-id
        if enrollment is None:
            raise Http404(f"No enrollment {object_id!r}.")
        if not self.has_change_permission(request, enrollment):
            raise DjangoPermissionDenied
        step = get_object_or_404(StepInstance, pk=step_id, enrollment=enrollment)
        try:
            step_complete(step_id=step.pk, actor=Actor.for_user(request.user), via="coordinator")
        except (BatonError, ValueError) as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, f"“{step.title}” completed.", messages.SUCCESS)
        return HttpResponseRedirect(
            reverse("admin:participants_enrollment_change", args=[enrollment.pk])
        )


@admin.register(StepInstance)
class StepInstanceAdmin(ReadOnlyAdmin, OrganizationScopedAdmin):
    organization_field = "enrollment__organization"
    list_display = ["title", "enrollment", "stage_key", "kind", "state", "due_at", "completed_at"]
    list_filter = ["state", "kind", "enrollment__program"]
    search_fields = ["=enrollment__participant__external_ref", "step_key"]
    list_select_related = ["enrollment__participant", "enrollment__program"]


@admin.register(ParticipantEvent)
class ParticipantEventAdmin(ReadOnlyAdmin, OrganizationScopedAdmin):
    list_display = [
        "event_id",
        "event_type",
        "external_ref",
        "disposition",
        "occurred_at",
        "received_at",
        "source",
    ]
    list_filter = ["disposition", "event_type", "source"]
    search_fields = ["=external_ref", "=event_id"]
