"""Tenancy, programs and their versioned workflow definitions, the audit
trail, and the operations exception queue."""

import hashlib
import json
from zoneinfo import available_timezones

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_fsm import GET_STATE, FSMField, FSMModelMixin, transition

from programs.errors import AppendOnlyError, ImmutableVersionError

TIMEZONE_CHOICES = sorted((tz, tz) for tz in available_timezones())


class Organization(models.Model):
    """A customer running one or more programs; the unit of tenancy."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    require_mfa = models.BooleanField(
        default=False, help_text="Require every member to use two-factor authentication."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Role(models.TextChoices):
    COORDINATOR = "coordinator", "Coordinator"
    LEAD = "lead", "Lead"
    ADMIN = "admin", "Admin"
    AUDITOR = "auditor", "Auditor (read-only)"


class Membership(models.Model):
    """A user's role within one organization. Scoping everywhere reads these."""

    # no index of its own: uniq_membership (user, organization) leads with it
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="memberships",
        db_index=False,
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="uniq_membership")
        ]

    def __str__(self):
        return f"{self.user} · {self.organization} · {self.get_role_display()}"


class ProgramState(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    RETIRED = "retired", "Retired"


class Program(FSMModelMixin, models.Model):
    # no index of its own: uniq_program_slug (organization, slug) leads with it
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="programs", db_index=False
    )
    slug = models.SlugField()
    name = models.CharField(max_length=200)
    timezone = models.CharField(
        max_length=64,
        choices=TIMEZONE_CHOICES,
        default="UTC",
        help_text="Due dates and quiet hours are computed in this timezone.",
    )
    quiet_hours_start = models.TimeField(
        null=True, blank=True, help_text="No messages from this local time…"
    )
    quiet_hours_end = models.TimeField(null=True, blank=True, help_text="…until this local time.")
    state = FSMField(default=ProgramState.DRAFT, choices=ProgramState.choices, protected=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "slug"], name="uniq_program_slug")
        ]

    def __str__(self):
        return self.name

    # Transition methods change fields in memory only; services save and audit.
    @transition(
        field=state,
        source=ProgramState.DRAFT,
        target=ProgramState.ACTIVE,
        conditions=[lambda p: p.versions.filter(published_at__isnull=False).exists()],
    )
    def activate(self):
        """Start running: needs at least one published definition."""

    @transition(field=state, source=ProgramState.ACTIVE, target=ProgramState.PAUSED)
    def pause(self):
        """Stop timers and new enrollments until resumed."""

    @transition(field=state, source=ProgramState.PAUSED, target=ProgramState.ACTIVE)
    def resume(self):
        """Continue after a pause."""

    @transition(
        field=state, source=[ProgramState.ACTIVE, ProgramState.PAUSED], target=ProgramState.RETIRED
    )
    def retire(self):
        """End the program for good; terminal."""

    def latest_published_version(self):
        return self.versions.filter(published_at__isnull=False).order_by("-number").first()


def definition_checksum(definition: dict) -> str:
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class ProgramVersion(models.Model):
    """One version of a program's workflow definition, immutable once published.

    Enrollments point at the version they started on, so publishing a newer
    one never changes a journey already under way.
    """

    # no index of its own: uniq_program_version (program, number) leads with it
    program = models.ForeignKey(
        Program, on_delete=models.PROTECT, related_name="versions", db_index=False
    )
    number = models.PositiveIntegerField()
    definition = models.JSONField(help_text="Stages, steps, SLAs and escalations (see docs).")
    checksum = models.CharField(max_length=64, editable=False)
    published_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["program", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["program", "number"], name="uniq_program_version")
        ]

    def __str__(self):
        return f"{self.program} v{self.number}"

    @property
    def is_published(self) -> bool:
        return self.published_at is not None

    def save(self, *args, **kwargs):
        if self.pk:
            stored = (
                ProgramVersion.objects.filter(pk=self.pk)
                .values("definition", "published_at", "number", "program_id")
                .first()
            )
            if stored and stored["published_at"] is not None:
                changed = (
                    stored["definition"] != self.definition
                    or stored["number"] != self.number
                    or stored["program_id"] != self.program_id
                    or stored["published_at"] != self.published_at
                )
                if changed:
                    raise ImmutableVersionError(
                        f"{self} is published and cannot change; publish a new version instead"
                    )
        self.checksum = definition_checksum(self.definition)
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        if self.is_published:
            raise ImmutableVersionError(f"{self} is published and cannot be deleted")
        return super().delete(*args, **kwargs)

    # Convenience readers over the definition document.
    def stage_for_state(self, state: str) -> dict | None:
        for stage in self.definition.get("stages", []):
            if stage["state"] == state:
                return stage
        return None

    def step_definition(self, key: str) -> dict | None:
        for stage in self.definition.get("stages", []):
            for step in stage.get("steps", []):
                if step["key"] == key:
                    return step
        return None


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("audit events are append-only: update is not allowed")

    def delete(self):
        raise AppendOnlyError("audit events are append-only: delete is not allowed")

    # Bulk creation is allowed (appending); bulk_update is not.
    def bulk_update(self, *args, **kwargs):
        raise AppendOnlyError("audit events are append-only: update is not allowed")


class AuditEvent(models.Model):
    """One row of the append-only audit trail. Written only via `audit_record`.

    Actor and object are stored as text (kind, id, label) rather than foreign
    keys, so the trail survives the deletion of the things it describes. On
    PostgreSQL a trigger also refuses UPDATE and DELETE at the database.
    """

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Indexed by (organization, created_at) below; no index of its own.
    organization = models.ForeignKey(
        Organization,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
        db_index=False,
    )
    actor_kind = models.CharField(max_length=20)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=100, db_index=True)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    from_state = models.CharField(max_length=40, blank=True)
    to_state = models.CharField(max_length=40, blank=True)
    reason = models.TextField(blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    metadata = models.JSONField(default=dict, blank=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["object_type", "object_id", "created_at"]),
            models.Index(fields=["organization", "created_at"]),
            # People's actions per organization and time (the dashboard's
            # manual interventions today, the daily metrics snapshot): a
            # small share of the trail, so a partial index.
            models.Index(
                fields=["organization", "created_at"],
                condition=Q(actor_kind="user"),
                name="audit_user_actions_idx",
            ),
        ]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise AppendOnlyError("audit events are append-only: update is not allowed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("audit events are append-only: delete is not allowed")


class Severity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


SEVERITY_RANK = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


class ExceptionState(models.TextChoices):
    OPEN = "open", "Open"
    CLAIMED = "claimed", "Claimed"
    SNOOZED = "snoozed", "Snoozed"
    RESOLVED = "resolved", "Resolved"
    DISMISSED = "dismissed", "Dismissed"


ACTIVE_EXCEPTION_STATES = (ExceptionState.OPEN, ExceptionState.CLAIMED, ExceptionState.SNOOZED)


class OpsException(FSMModelMixin, models.Model):
    """An item in the operations exception queue: something that needs a human.

    At most one active (open, claimed or snoozed) item exists per organization
    and `dedup_key`; repeats bump `occurrences` instead of opening another.
    """

    # No single-column indexes on the foreign keys and `kind`: composite
    # indexes below lead with organization, program and assignee, and kind
    # is read only together with them. Every index is paid for on each of
    # the many items the sweep and ingestion open. No database constraint on
    # organization and program either (the ORM's PROTECT still applies):
    # checked at commit, they cost the sweep a KEY SHARE lookup of the same
    # two rows per item, 18% of its time (docs/performance.md).
    organization = models.ForeignKey(
        Organization,
        on_delete=models.PROTECT,
        related_name="exceptions",
        db_index=False,
        db_constraint=False,
    )
    program = models.ForeignKey(
        Program,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="exceptions",
        db_index=False,
        db_constraint=False,
    )
    kind = models.CharField(max_length=40)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.MEDIUM)
    priority = models.PositiveSmallIntegerField(
        default=2, help_text="Severity rank (4 = critical); queues sort by it, then by age."
    )
    title = models.CharField(max_length=300)
    detail = models.TextField(blank=True)
    subject_type = models.CharField(max_length=100, blank=True)
    subject_id = models.CharField(max_length=64, blank=True)
    dedup_key = models.CharField(max_length=300)
    occurrences = models.PositiveIntegerField(default=1)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    due_by = models.DateTimeField(help_text="Resolution SLA, set from the severity.")
    state = FSMField(default=ExceptionState.OPEN, choices=ExceptionState.choices, protected=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_exceptions",
        db_index=False,
    )
    snoozed_until = models.DateTimeField(null=True, blank=True)
    resolution_note = models.TextField(blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=200, blank=True)
    auto_resolved = models.BooleanField(default=False)
    context = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-priority", "first_seen_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "dedup_key"],
                condition=Q(state__in=["open", "claimed", "snoozed"]),
                name="uniq_active_exception_dedup",
            )
        ]
        indexes = [
            models.Index(fields=["organization", "state", "-priority", "first_seen_at"]),
            # Most items are never assigned or snoozed: partial indexes keep
            # those out (new items touch neither).
            models.Index(
                fields=["assignee", "state"],
                condition=Q(assignee__isnull=False),
                name="opsexc_assignee_idx",
            ),
            models.Index(fields=["subject_type", "subject_id"]),
            models.Index(
                fields=["snoozed_until"],
                condition=Q(state="snoozed"),
                name="opsexc_snoozed_idx",
            ),
            # The console queues read only active items, in queue order, and
            # filter on the INCLUDEd columns: partial (about a tenth of the
            # table) and covering, so a page, a capped count or the facet
            # sample is an index-only scan that stops after LIMIT rows.
            models.Index(
                fields=["organization", "state", "-priority", "first_seen_at", "id"],
                include=["kind", "severity", "program", "due_by", "assignee"],
                condition=Q(state__in=["open", "claimed", "snoozed"]),
                name="opsexc_active_queue_idx",
            ),
            # "My queue": one person's active items in queue order.
            models.Index(
                fields=["assignee", "state", "-priority", "first_seen_at", "id"],
                include=["organization", "kind", "severity", "program", "due_by"],
                condition=Q(state__in=["open", "claimed", "snoozed"], assignee__isnull=False),
                name="opsexc_mine_queue_idx",
            ),
            # The dashboard's "today" figures and the daily metrics snapshot:
            # items of a program opened, or closed, within a time window.
            models.Index(fields=["program", "first_seen_at"], name="opsexc_program_opened_idx"),
            models.Index(
                fields=["program", "resolved_at"],
                condition=Q(resolved_at__isnull=False),
                name="opsexc_program_closed_idx",
            ),
            # The dashboard's backlog aging: a program's active items by age,
            # counted index-only from narrow entries.
            models.Index(
                fields=["program", "first_seen_at"],
                include=["organization", "due_by"],
                condition=Q(state__in=["open", "claimed", "snoozed"]),
                name="opsexc_program_backlog_idx",
            ),
        ]
        permissions = [
            ("bulk_act_opsexception", "Can run bulk actions on exceptions"),
            ("reassign_opsexception", "Can reassign exceptions"),
        ]

    def __str__(self):
        return f"#{self.pk} {self.title}"

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_EXCEPTION_STATES

    @property
    def is_overdue(self) -> bool:
        return self.is_active and self.due_by < timezone.now()

    @transition(field=state, source=ExceptionState.OPEN, target=ExceptionState.CLAIMED)
    def claim(self, assignee):
        self.assignee = assignee

    @transition(field=state, source=ExceptionState.CLAIMED, target=ExceptionState.OPEN)
    def release(self):
        self.assignee = None

    @transition(
        field=state,
        source=[ExceptionState.OPEN, ExceptionState.CLAIMED],
        target=ExceptionState.SNOOZED,
    )
    def snooze(self, until):
        self.snoozed_until = until

    @transition(
        field=state,
        source=ExceptionState.SNOOZED,
        target=GET_STATE(
            lambda item: ExceptionState.CLAIMED if item.assignee_id else ExceptionState.OPEN,
            states=[ExceptionState.CLAIMED, ExceptionState.OPEN],
        ),
    )
    def wake(self):
        """Back to whoever held it (claimed), or to the unassigned queue (open)."""
        self.snoozed_until = None

    @transition(field=state, source=list(ACTIVE_EXCEPTION_STATES), target=ExceptionState.RESOLVED)
    def resolve(self, note, by, auto=False):
        self.resolution_note = note
        self.resolved_by = by
        self.resolved_at = timezone.now()
        self.auto_resolved = auto
        self.snoozed_until = None

    @transition(field=state, source=list(ACTIVE_EXCEPTION_STATES), target=ExceptionState.DISMISSED)
    def dismiss(self, reason, by):
        self.resolution_note = reason
        self.resolved_by = by
        self.resolved_at = timezone.now()
        self.snoozed_until = None


class JobHeartbeat(models.Model):
    """Last run of each scheduled job, for /readyz and the console."""

    name = models.CharField(max_length=100, unique=True)
    last_started_at = models.DateTimeField(null=True)
    last_finished_at = models.DateTimeField(null=True)
    last_ok = models.BooleanField(default=True)
    last_error = models.TextField(blank=True)
    last_result = models.JSONField(default=dict, blank=True)

    def __str__(self):
        return self.name


def validate_timezone(value):
    if value not in available_timezones():
        raise ValidationError(f"{value!r} is not a known IANA timezone")
