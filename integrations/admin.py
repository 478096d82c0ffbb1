"""Admin for webhook endpoints (health, test event, rotation) and deliveries
(attempts, replay). Every change goes through integrations.services.webhooks;
secrets are shown once (creation, rotation) and masked everywhere else."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from integrations.delivery_selectors import endpoint_health
from integrations.models import Attempt, Delivery, DeliveryState, WebhookEndpoint
from integrations.services.webhooks import (
    WebhookEndpointInvalid,
    delivery_replay,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_send_test,
    webhook_endpoint_update,
    webhook_endpoint_validate,
)
from integrations.signing import mask_secret
from integrations.ssrf import UnsafeURLError, check_url
from programs.actors import Actor
from programs.admin_scoping import OrganizationScopedAdmin, ReadOnlyTabularInline
from programs.services import audit_record


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https")

    class Meta:
        model = WebhookEndpoint
        fields = [
            "organization",
            "partner_name",
            "url",
            "event_types",
            "enabled",
            "retry_schedule",
            "breaker_threshold",
            "breaker_probe_seconds",
        ]

    def clean_url(self):
        url = self.cleaned_data["url"]
        try:
            check_url(url)
        except UnsafeURLError as exc:
            raise forms.ValidationError(exc.message) from None
        return url

    def clean(self):
        """The service's checks as field errors, before anything is saved:
        refused in save_model, the page said 'changed successfully' beside
        the error and the typed input was lost."""
        data = super().clean()
        checked = {
            name: data[name]
            for name in ("partner_name", "event_types", "retry_schedule")
            if data.get(name) is not None
        }
        try:
            webhook_endpoint_validate(**checked)
        except WebhookEndpointInvalid as exc:
            for field, message in exc.errors:
                name = field.split("[", 1)[0]
                self.add_error(name if name in self.fields else None, f"{field}: {message}")
        for name in ("breaker_threshold", "breaker_probe_seconds"):
            value = data.get(name)
            if value is not None and value < 1:
                self.add_error(name, "must be at least 1")
        return data


def _show_secret_once(request, endpoint, secret, what):
    messages.warning(
        request,
        format_html(
            "{} for {}: <code>{}</code> — copy it now; it is shown only once.",
            what,
            endpoint.partner_name,
            secret,
        ),
    )


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(OrganizationScopedAdmin):
    form = WebhookEndpointForm
    list_display = [
        "partner_name",
        "organization",
        "url",
        "enabled",
        "breaker_state",
        "success_rate",
        "p95_latency",
        "backlog",
        "dead",
    ]
    list_filter = ["enabled", "breaker_state", "organization"]
    list_select_related = ["organization"]
    list_per_page = 50
    search_fields = ["partner_name", "url"]
    actions = ["send_test_event", "rotate_secret", "enable_endpoints", "disable_endpoints"]
    readonly_fields = [
        "masked_secret",
        "secret_rotation",
        "disabled_reason",
        "breaker_state",
        "consecutive_failures",
        "breaker_opened_at",
        "breaker_next_probe_at",
        "health",
        "recent_deliveries",
        "created_at",
    ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return [*self.readonly_fields, "organization"]

    def get_fields(self, request, obj=None):
        fields = list(WebhookEndpointForm.Meta.fields)
        if obj is None:
            return fields
        return fields + [f for f in self.readonly_fields if f not in fields]

    # -- health columns -------------------------------------------------------
    def _health(self, obj):
        cache = getattr(self, "_health_cache", None)
        if cache is None or cache[0] != obj.pk:
            self._health_cache = (obj.pk, endpoint_health(obj))
        return self._health_cache[1]

    @admin.display(description="success (24 h)")
    def success_rate(self, obj):
        return self._health(obj)["success_rate_display"]

    @admin.display(description="p95 latency")
    def p95_latency(self, obj):
        return self._health(obj)["p95_display"]

    @admin.display(description="backlog")
    def backlog(self, obj):
        return self._health(obj)["backlog"]

    @admin.display(description="dead")
    def dead(self, obj):
        return self._health(obj)["dead"]

    @admin.display(description="secret")
    def masked_secret(self, obj):
        return mask_secret(obj.secret)

    @admin.display(description="rotation")
    def secret_rotation(self, obj):
        if obj.previous_secret and obj.previous_secret_expires_at:
            until = f"{obj.previous_secret_expires_at:%Y-%m-%d %H:%M}"
            return f"previous secret also signs until {until} UTC"
        return "no rotation in progress"

    @admin.display(description="health (last 24 h)")
    def health(self, obj):
        h = endpoint_health(obj)
        return format_html(
            "success {} over {} attempts · p95 {} · backlog {} · dead {} · held {} · breaker {}",
            h["success_rate_display"],
            h["attempts"],
            h["p95_display"],
            h["backlog"],
            h["dead"],
            h["held"],
            obj.get_breaker_state_display(),
        )

    @admin.display(description="recent deliveries")
    def recent_deliveries(self, obj):
        rows = Delivery.objects.filter(endpoint=obj).order_by("-id")[:20]
        return format_html(
            "<table><tr><th>id</th><th>event</th><th>state</th><th>attempts</th>"
            "<th>last</th></tr>{}</table>",
            format_html_join(
                "",
                '<tr><td><a href="../../../delivery/{}/change/">{}</a></td><td>{}</td>'
                "<td>{}</td><td>{}</td><td>{}</td></tr>",
                (
                    (d.pk, d.pk, d.event_type, d.state, d.attempt_count, d.last_error or "")
                    for d in rows
                ),
            ),
        )

    # -- writes go through services ------------------------------------------
    def save_model(self, request, obj, form, change):
        actor = Actor.for_user(request.user)
        data = form.cleaned_data
        try:
            if not change:
                endpoint, secret = webhook_endpoint_create(
                    organization=data["organization"],
                    partner_name=data["partner_name"],
                    url=data["url"],
                    actor=actor,
                    event_types=data.get("event_types") or [],
                    enabled=data.get("enabled", True),
                    retry_schedule=data.get("retry_schedule") or None,
                    breaker_threshold=data.get("breaker_threshold"),
                    breaker_probe_seconds=data.get("breaker_probe_seconds"),
                )
                obj.pk = endpoint.pk
                obj._state.adding = False
                _show_secret_once(request, endpoint, secret, "Signing secret")
                return
            changes = {
                name: data[name]
                for name in ("partner_name", "url", "event_types", "retry_schedule", "enabled")
                if name in form.changed_data
            }
            if changes:
                webhook_endpoint_update(endpoint_id=obj.pk, actor=actor, **changes)
            tuning = {
                name: data[name]
                for name in ("breaker_threshold", "breaker_probe_seconds")
                if name in form.changed_data
            }
            if tuning:
                before = WebhookEndpoint.objects.values(*tuning).get(pk=obj.pk)
                WebhookEndpoint.objects.filter(pk=obj.pk).update(**tuning)
                audit_record(
                    actor=actor,
                    action="webhook_endpoint.updated",
                    target=obj,
                    metadata={
                        "changed": {
                            name: {"from": before[name], "to": value}
                            for name, value in tuning.items()
                        },
                        "via": "admin",
                    },
                )
        except WebhookEndpointInvalid as exc:
            messages.error(request, str(exc))

    def delete_model(self, request, obj):
        webhook_endpoint_delete(endpoint_id=obj.pk, actor=Actor.for_user(request.user))

    def delete_queryset(self, request, queryset):
        for endpoint in queryset:
            self.delete_model(request, endpoint)

    @admin.action(description="Send a test event", permissions=["change"])
    def send_test_event(self, request, queryset):
        actor = Actor.for_user(request.user)
        for endpoint in queryset:
            webhook_endpoint_send_test(endpoint_id=endpoint.pk, actor=actor)
        self.message_user(request, f"Test event queued for {queryset.count()} endpoint(s).")

    @admin.action(description="Rotate signing secret (old one valid 24 h)", permissions=["change"])
    def rotate_secret(self, request, queryset):
        actor = Actor.for_user(request.user)
        for endpoint in queryset:
            secret = webhook_endpoint_rotate_secret(endpoint_id=endpoint.pk, actor=actor)
            _show_secret_once(request, endpoint, secret, "New signing secret")

    @admin.action(description="Enable (re-send held deliveries)", permissions=["change"])
    def enable_endpoints(self, request, queryset):
        actor = Actor.for_user(request.user)
        for endpoint in queryset.filter(enabled=False):
            webhook_endpoint_update(endpoint_id=endpoint.pk, actor=actor, enabled=True)
        self.message_user(request, "Enabled.")

    @admin.action(description="Disable", permissions=["change"])
    def disable_endpoints(self, request, queryset):
        actor = Actor.for_user(request.user)
        for endpoint in queryset.filter(enabled=True):
            webhook_endpoint_update(endpoint_id=endpoint.pk, actor=actor, enabled=False)
        self.message_user(request, "Disabled.")


class AttemptInline(ReadOnlyTabularInline):
    model = Attempt
    fields = [
        "number",
        "started_at",
        "status_code",
        "latency_ms",
        "error_class",
        "response_snippet",
    ]
    readonly_fields = fields
    ordering = ["id"]


@admin.register(Delivery)
class DeliveryAdmin(OrganizationScopedAdmin):
    list_display = [
        "id",
        "event_type",
        "endpoint",
        "state",
        "attempt_count",
        "last_status_code",
        "next_attempt_at",
        "webhook_id",
        "created_at",
    ]
    list_filter = ["state", "event_type", "endpoint__partner_name"]
    list_select_related = ["endpoint"]
    search_fields = ["webhook_id", "event_type"]
    date_hierarchy = "created_at"
    inlines = [AttemptInline]
    actions = ["replay_selected"]
    readonly_fields = [
        "organization",
        "event",
        "endpoint",
        "event_type",
        "webhook_id",
        "state",
        "attempt_count",
        "next_attempt_at",
        "lease_expires_at",
        "last_status_code",
        "last_error",
        "created_at",
        "delivered_at",
        "dead_at",
        "replays",
    ]
    fields = readonly_fields

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        # rows are read-only: the form shows them, actions replay them
        return request.method in ("GET", "HEAD") and super().has_change_permission(request, obj)

    def has_replay_permission(self, request):
        return request.user.has_perm("integrations.change_delivery")

    @admin.action(description="Replay (same webhook-id and body)", permissions=["replay"])
    def replay_selected(self, request, queryset):
        ids = list(
            queryset.filter(
                state__in=[DeliveryState.DEAD, DeliveryState.DISABLED, DeliveryState.DELIVERED]
            ).values_list("pk", flat=True)
        )
        count = delivery_replay(
            delivery_ids=ids, actor=Actor.for_user(request.user), reason="admin bulk replay"
        )
        skipped = queryset.count() - count
        self.message_user(
            request,
            f"Replayed {count} deliveries"
            + (f"; skipped {skipped} still in flight or on a disabled endpoint" if skipped else ""),
        )
