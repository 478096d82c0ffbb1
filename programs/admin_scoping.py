"""Admin building blocks shared by every app: organization scoping and
state-transition buttons that call services (never `.save()` on state)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import NotRelationField, get_fields_from_path, unquote
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import models
from django.forms.fields import InvalidJSONInput
from django.http import Http404, HttpResponseRedirect
from django.urls import path, reverse

from programs.errors import BatonError
from programs.jsonlimits import MAX_JSON_DEPTH, json_deeper_than
from programs.lookups import is_key_of
from programs.models import Organization, Program
from programs.tenancy import organization_ids_for, scope_queryset


class AutocompleteSelectOfIds(AutocompleteSelect):
    """Django's autocomplete widget, re-rendering a refused form without
    looking up a submitted value that is no id: `pk__in=['²']` raised
    ValueError there (a 500 instead of the form's own error)."""

    def optgroups(self, name, value, attr=None):
        target = self.field.target_field
        return super().optgroups(name, [v for v in value if is_key_of(target, v)], attr)


class BoundedJSONField(forms.JSONField):
    """The admin's JSON fields refuse what the partner API refuses: nesting
    deeper than MAX_JSON_DEPTH ('[' * 1000 made json.loads raise
    RecursionError: a 500 on every form with a JSON field)."""

    def to_python(self, value):
        try:
            data = super().to_python(value)
            too_deep = json_deeper_than(data, MAX_JSON_DEPTH)
        except RecursionError:
            too_deep = True
        if too_deep:
            raise ValidationError(
                f"nests lists and objects deeper than {MAX_JSON_DEPTH} levels", code="invalid"
            )
        return data

    def bound_data(self, data, initial):
        try:
            return super().bound_data(data, initial)
        except RecursionError:  # re-rendering the refused form parses it again
            return InvalidJSONInput(data)


# What every Baton admin uses for its models' fields (merge, don't replace,
# when a subclass adds its own).
FORMFIELD_OVERRIDES = {models.JSONField: {"form_class": BoundedJSONField}}


class OrganizationScopedAdmin(admin.ModelAdmin):
    """Shows a user only rows of their organizations; superusers see all.

    Set `organization_field` to the lookup from the model to its organization
    (e.g. "program__organization"). Foreign-key choices are scoped too, so a
    user can neither see nor pick another organization's rows.
    """

    formfield_overrides = FORMFIELD_OVERRIDES

    organization_field = "organization"
    show_full_result_count = False

    def get_queryset(self, request):
        return scope_queryset(super().get_queryset(request), request.user, self.organization_field)

    def get_list_filter(self, request):
        """A related filter lists only what the user's rows point to: Django's
        lists every row of the related table, so the organization and program
        menus named other organizations and their programs."""
        filters = super().get_list_filter(request)
        if organization_ids_for(request.user) is None:
            return filters
        return [_scoped_filter(self.model, spec) for spec in filters]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name in self.get_autocomplete_fields(request):
            widget = AutocompleteSelectOfIds(db_field, self.admin_site, using=kwargs.get("using"))
            kwargs.setdefault("widget", widget)
        ids = organization_ids_for(request.user)
        if ids is not None:
            related = db_field.related_model
            if related is Organization:
                kwargs["queryset"] = Organization.objects.filter(pk__in=ids)
            elif related is Program:
                kwargs["queryset"] = Program.objects.filter(organization_id__in=ids)
            elif hasattr(related, "organization"):
                kwargs["queryset"] = related._default_manager.filter(organization_id__in=ids)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


def _scoped_filter(model, spec):
    if not isinstance(spec, str):
        return spec  # (field, FilterClass) or a SimpleListFilter: as declared
    try:
        field = get_fields_from_path(model, spec)[-1]
    except (FieldDoesNotExist, NotRelationField):
        return spec
    if field.is_relation and not field.auto_created:
        return (spec, admin.RelatedOnlyFieldListFilter)
    return spec


class ServiceTransitionAdmin(admin.ModelAdmin):
    """Adds a button per allowed transition on the change form.

    Subclasses define `transition_services = {"name": (label, callable)}`
    where callable(obj, request) performs the change through a service.
    Only transitions allowed from the current state (and for this user, via
    `has_change_permission`) are shown.
    """

    transition_services: dict = {}
    reason_transitions: tuple = ()  # these ask for a reason (request.POST["reason"])
    change_form_template = "admin/baton/change_form_transitions.html"

    def get_urls(self):
        info = self.model._meta.app_label, self.model._meta.model_name
        transition_url = path(
            "<path:object_id>/transition/<str:name>/",
            self.admin_site.admin_view(self.transition_view),
            name="{}_{}_transition".format(*info),
        )
        return [transition_url, *super().get_urls()]

    def allowed_transitions(self, request, obj):
        if obj is None or not self.has_change_permission(request, obj):
            return []
        available = {t.name for t in obj.get_available_state_transitions()}
        return [
            (name, label)
            for name, (label, _func) in self.transition_services.items()
            if name in available
        ]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["baton_transitions"] = self.allowed_transitions(request, obj)
        context["baton_reason_transitions"] = self.reason_transitions
        if obj is not None:
            info = self.model._meta.app_label, self.model._meta.model_name
            context["baton_transition_url"] = reverse(
                "admin:{}_{}_transition".format(*info),
                args=[obj.pk, "__name__"],
                current_app=self.admin_site.name,
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def transition_view(self, request, object_id, name):
        if request.method != "POST":
            raise DjangoPermissionDenied
        # What the change view does: an id that is no id is "not found", not a 500.
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(f"No {self.model._meta.verbose_name} {object_id!r}.")
        if name not in dict(self.allowed_transitions(request, obj)):
            self.message_user(request, f"“{name}” is not allowed from {obj.state}.", messages.ERROR)
        else:
            _label, func = self.transition_services[name]
            try:
                func(obj, request)
            except (BatonError, ValueError) as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"{name} done.", messages.SUCCESS)
        info = self.model._meta.app_label, self.model._meta.model_name
        return HttpResponseRedirect(reverse("admin:{}_{}_change".format(*info), args=[obj.pk]))


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyTabularInline(admin.TabularInline):
    """An inline that lists rows (changed only through services): no add,
    change or delete. Subclasses set `model` and `fields`."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def run_per_item(request, queryset, func):
    """Run `func(obj)` for each row through its service; one failure never
    undoes the others. Reports the count done and each failure (first 20)."""
    done, failed = 0, []
    for obj in queryset:
        try:
            func(obj)
            done += 1
        except (BatonError, ValueError) as exc:
            failed.append(f"#{obj.pk}: {exc}")
    if done:
        messages.success(request, f"{done} item(s) done.")
    for line in failed[:20]:
        messages.error(request, line)


def form_changes(form) -> dict:
    """{field: {"from", "to"}} for what an admin form changed, as audit
    metadata: JSON values (objects by id), and a secret never shown, only
    said to have changed."""
    changes = {}
    for name in form.changed_data:
        if "secret" in name:
            changes[name] = {"changed": True}
            continue
        changes[name] = {
            "from": _plain(form.initial.get(name)),
            "to": _plain(form.cleaned_data.get(name)),
        }
    return changes


def _plain(value):
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "pk"):
        return value.pk
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "__iter__"):
        return [_plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


class AuditedAdminWrites:
    """Audit rows for an admin whose saves and deletions have no service:
    `<audit_name>.created` / `.changed` (with from -> to) / `.deleted`."""

    audit_name = ""

    def save_model(self, request, obj, form, change):
        from programs.actors import Actor
        from programs.services import audit_record

        super().save_model(request, obj, form, change)
        if change and not form.changed_data:
            return
        audit_record(
            actor=Actor.for_user(request.user),
            action=f"{self.audit_name}.{'changed' if change else 'created'}",
            target=obj,
            metadata={"changed": form_changes(form), "via": "admin"},
        )

    def delete_model(self, request, obj):
        from programs.actors import Actor
        from programs.services import audit_record

        audit_record(
            actor=Actor.for_user(request.user),
            action=f"{self.audit_name}.deleted",
            target=obj,
            metadata={"name": str(obj)[:200], "via": "admin"},
        )
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)
