"""Messaging: templates, messages, opt-outs and the configured channel connectors.

Baton never holds a phone number or an email address. A message names the
participant by the opaque `external_ref` (copied at scheduling time) and the
enrollment and step by plain ids: messaging sits below participants and never
imports it.
"""

from __future__ import annotations

import re
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_fsm import FSMField, FSMModelMixin, transition

from programs.errors import ImmutableVersionError
from programs.models import Organization, Program


class Channel(models.TextChoices):
    SMS = "sms", "SMS"
    EMAIL = "email", "Email"
    PUSH = "push", "Push notification"
    IN_APP = "in_app", "In-app"


# When `channel` is not given, channels are tried in this order.
CHANNEL_PREFERENCE = (Channel.SMS, Channel.EMAIL, Channel.PUSH, Channel.IN_APP)


class CompleteOn(models.TextChoices):
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"


TEMPLATE_KEY = re.compile(r"[a-z][a-z0-9_]{0,62}")
MAX_TEMPLATE_LIFETIME = timedelta(days=3650)
# An SMS of 1,600 characters is already ten segments; other channels get room.
BODY_LIMITS = {"sms": 1600, None: 100_000}


class MessageTemplate(models.Model):
    """One version of a message template for a program, key, channel and locale.

    Placeholders (`{{ name }}`) may only use Baton's PHI-free variables (see
    messaging.rendering). Published versions are immutable: change one by
    creating the next version. A message records the version it used.
    """

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    # no index of its own: uniq_message_template_version (program, key, ...) leads with it
    program = models.ForeignKey(
        Program, on_delete=models.PROTECT, related_name="message_templates", db_index=False
    )
    key = models.SlugField(max_length=63, help_text="Referenced by message steps, e.g. invitation.")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    locale = models.CharField(max_length=16, default="en", help_text="BCP 47, e.g. en or es-US.")
    version = models.PositiveIntegerField(default=1)
    subject = models.CharField(
        max_length=200, blank=True, help_text="Email subject; placeholders allowed."
    )
    body = models.TextField(help_text="Text with {{ placeholders }} from the allowed list only.")
    links = models.JSONField(
        default=dict,
        blank=True,
        help_text='Links to the customer\'s tools, usable as {{ link_<name> }}: {"app": "https://…"}.',
    )
    complete_on = models.CharField(
        max_length=10,
        choices=CompleteOn.choices,
        default=CompleteOn.DELIVERED,
        help_text="When a message step using this template counts as done.",
    )
    expires_after = models.DurationField(
        null=True,
        blank=True,
        help_text="Suppress a message not sent within this long of being due (quiet hours, "
        "outages). Empty: never expires.",
    )
    published_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["program", "key", "channel", "locale", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "key", "channel", "locale", "version"],
                name="uniq_message_template_version",
            )
        ]
        indexes = [models.Index(fields=["program", "key", "locale", "published_at"])]

    def __str__(self):
        return f"{self.key} · {self.get_channel_display()} · {self.locale} v{self.version}"

    @property
    def is_published(self) -> bool:
        return self.published_at is not None

    def clean(self):
        from messaging.rendering import TemplateVariableError, validate_template

        errors = {}
        try:
            validate_template(subject=self.subject, body=self.body, links=self.links)
        except TemplateVariableError as exc:
            errors.update(exc.by_field)
        # What a program definition can name (`message.template`): lower
        # case, digits and underscores. A key with "-" or capitals was
        # accepted and no step could ever send it.
        if self.key and not TEMPLATE_KEY.fullmatch(self.key):
            errors["key"] = "lower-case letters, digits and _, starting with a letter"
        if self.expires_after is not None and not (
            timedelta(0) < self.expires_after <= MAX_TEMPLATE_LIFETIME
        ):
            errors["expires_after"] = (
                "a positive duration of at most 10 years (or empty: never expires)"
            )
        limit = BODY_LIMITS.get(self.channel, BODY_LIMITS[None])
        if self.body and len(self.body) > limit:
            errors["body"] = f"at most {limit:,} characters for {self.channel}"
        if errors:
            raise ValidationError(errors)
        if (
            self.program_id
            and self.organization_id
            and (self.program.organization_id != self.organization_id)
        ):
            raise ValidationError({"program": "the program belongs to another organization"})

    _immutable = (
        "subject",
        "body",
        "links",
        "complete_on",
        "expires_after",
        "key",
        "channel",
        "locale",
        "version",
        "program_id",
        "published_at",
    )

    def save(self, *args, **kwargs):
        if self.pk:
            stored = MessageTemplate.objects.filter(pk=self.pk).values(*self._immutable).first()
            if (
                stored
                and stored["published_at"] is not None
                and any(stored[f] != getattr(self, f) for f in self._immutable)
            ):
                raise ImmutableVersionError(
                    f"template {self} is published and cannot change; create a new version"
                )
        from messaging.rendering import validate_template

        validate_template(subject=self.subject, body=self.body, links=self.links)
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        if self.is_published:
            raise ImmutableVersionError(f"template {self} is published and cannot be deleted")
        return super().delete(*args, **kwargs)


class MessageState(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"
    UNDELIVERABLE = "undeliverable", "Undeliverable"
    SUPPRESSED = "suppressed", "Suppressed"
    CANCELED = "canceled", "Canceled"


PENDING_STATES = (MessageState.SCHEDULED, MessageState.QUEUED)
# States that count against the daily frequency cap.
CAP_STATES = (
    MessageState.SCHEDULED,
    MessageState.QUEUED,
    MessageState.SENT,
    MessageState.DELIVERED,
)


class SuppressionReason(models.TextChoices):
    OPTED_OUT = "opted_out", "Participant opted out of the channel"
    QUIET_HOURS = "quiet_hours", "Quiet hours pushed it past its expiry"
    FREQUENCY_CAP = "frequency_cap", "Daily frequency cap reached"
    EXPIRED = "expired", "Not sent before its expiry"


class MessageKind(models.TextChoices):
    STEP = "step", "Message step"
    REMINDER = "reminder", "Reminder for an overdue step"
    OTHER = "other", "Other"


class Message(FSMModelMixin, models.Model):
    """One message to one participant on one channel.

    scheduled → queued → sent → delivered | failed | undeliverable, or
    suppressed (opt-out, quiet hours past expiry, frequency cap) or canceled
    (the enrollment left the state that needed it). Failed, undeliverable and
    suppressed messages can be resent (back to scheduled). Every change goes
    through messaging.services, with an audit row and an outbox event.
    """

    # no indexes of their own: msg_cap_idx and msg_admin_idx lead with them
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    program = models.ForeignKey(
        Program, on_delete=models.PROTECT, related_name="messages", db_index=False
    )
    enrollment_id = models.BigIntegerField(db_index=True, help_text="participants.Enrollment id.")
    step_instance_id = models.BigIntegerField(
        null=True, blank=True, db_index=True, help_text="participants.StepInstance id, if any."
    )
    step_title = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=10, choices=MessageKind.choices, default=MessageKind.OTHER)
    participant_ref = models.CharField(
        max_length=200, db_index=True, help_text="The participant's opaque external_ref."
    )
    participant_timezone = models.CharField(max_length=64, default="UTC")
    locale = models.CharField(max_length=16, default="en")
    template = models.ForeignKey(MessageTemplate, on_delete=models.PROTECT, related_name="messages")
    template_key = models.CharField(max_length=63)
    template_version = models.PositiveIntegerField()
    channel = models.CharField(max_length=10, choices=Channel.choices)
    complete_on = models.CharField(
        max_length=10, choices=CompleteOn.choices, default=CompleteOn.DELIVERED
    )
    variables = models.JSONField(default=dict, blank=True, help_text="PHI-free variables.")
    due_at = models.DateTimeField(null=True, blank=True, help_text="When the step is due.")
    scheduled_for = models.DateTimeField(
        db_index=True, help_text="When it may go out (after quiet hours)."
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    dedup_key = models.CharField(max_length=200, null=True, blank=True)
    state = FSMField(default=MessageState.SCHEDULED, choices=MessageState.choices, protected=True)
    suppression_reason = models.CharField(
        max_length=20, choices=SuppressionReason.choices, blank=True
    )
    connector = models.ForeignKey(
        "messaging.ChannelConnector",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="messages",
    )
    vendor_message_id = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="Queued: when the dispatcher may (re)try it."
    )
    last_error = models.CharField(max_length=2000, blank=True)
    failure_reported = models.BooleanField(
        default=False, help_text="A message_failed exception was raised for it."
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-scheduled_for", "-id"]
        constraints = [
            # Never two messages for the same step and template.
            models.UniqueConstraint(
                fields=["step_instance_id", "template_key"],
                condition=Q(step_instance_id__isnull=False),
                name="uniq_message_step_template",
            ),
            models.UniqueConstraint(
                fields=["organization", "dedup_key"],
                condition=Q(dedup_key__isnull=False),
                name="uniq_message_dedup_key",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "scheduled_for"], name="msg_due_idx"),
            models.Index(fields=["state", "next_attempt_at"], name="msg_retry_idx"),
            models.Index(
                fields=["organization", "participant_ref", "scheduled_for"], name="msg_cap_idx"
            ),
            models.Index(fields=["program", "state", "channel"], name="msg_admin_idx"),
        ]
        permissions = [("resend_message", "Can resend or switch the channel of a message")]

    def __str__(self):
        return f"message #{self.pk} {self.template_key} ({self.channel}) {self.state}"

    # Transition methods change fields in memory only; services save and audit.
    @transition(field=state, source=MessageState.SCHEDULED, target=MessageState.QUEUED)
    def queue(self, now):
        self.next_attempt_at = now

    @transition(field=state, source=MessageState.QUEUED, target=MessageState.SENT)
    def mark_sent(self, now, vendor_message_id=""):
        self.sent_at = now
        self.next_attempt_at = None
        self.last_error = ""
        if vendor_message_id:
            self.vendor_message_id = vendor_message_id

    # A fast vendor may report delivery before Baton records the send.
    @transition(
        field=state, source=[MessageState.QUEUED, MessageState.SENT], target=MessageState.DELIVERED
    )
    def mark_delivered(self, now, vendor_message_id=""):
        self.delivered_at = now
        self.sent_at = self.sent_at or now
        self.next_attempt_at = None
        if vendor_message_id:
            self.vendor_message_id = vendor_message_id

    @transition(
        field=state, source=[MessageState.QUEUED, MessageState.SENT], target=MessageState.FAILED
    )
    def mark_failed(self, now, error=""):
        self.failed_at = now
        self.next_attempt_at = None
        self.last_error = error[:2000]

    @transition(
        field=state,
        source=[MessageState.QUEUED, MessageState.SENT],
        target=MessageState.UNDELIVERABLE,
    )
    def mark_undeliverable(self, now, error=""):
        self.failed_at = now
        self.next_attempt_at = None
        self.last_error = error[:2000]

    @transition(field=state, source=list(PENDING_STATES), target=MessageState.SUPPRESSED)
    def suppress(self, reason_code):
        self.suppression_reason = reason_code
        self.next_attempt_at = None

    @transition(field=state, source=list(PENDING_STATES), target=MessageState.CANCELED)
    def cancel(self):
        self.next_attempt_at = None

    @transition(
        field=state,
        source=[MessageState.FAILED, MessageState.UNDELIVERABLE, MessageState.SUPPRESSED],
        target=MessageState.SCHEDULED,
    )
    def resend(self, at):
        self.scheduled_for = at
        self.attempts = 0
        self.last_error = ""
        self.suppression_reason = ""
        self.failed_at = None
        self.next_attempt_at = None


class OptOut(models.Model):
    """A participant opted out of a channel (e.g. replied STOP). Messages on that
    channel are suppressed from then on, at scheduling and again at dispatch."""

    # no index of its own: uniq_optout (organization, participant_ref, channel) leads with it
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    participant_ref = models.CharField(max_length=200)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    source = models.CharField(max_length=200, blank=True, help_text="Connector or person.")
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "opt-out"
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "participant_ref", "channel"], name="uniq_optout"
            )
        ]

    def __str__(self):
        return f"{self.participant_ref} opted out of {self.get_channel_display()}"


class ChannelConnector(models.Model):
    """A configured connector: how one organization's messages leave Baton.

    `kind` names a class in the integrations.connectors registry. The secret
    signs outbound requests and verifies the tool's callbacks
    (POST /api/v1/messaging/callbacks/<id>/); `previous_secret` stays valid
    during a rotation.
    """

    # no index of its own: uniq_connector_slug (organization, slug) leads with it
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    slug = models.SlugField(max_length=50)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=40, help_text="console, webhook, or a registered kind.")
    url = models.URLField(max_length=2000, blank=True, help_text="Webhook kinds: the tool's URL.")
    secret = models.CharField(max_length=200, blank=True)
    previous_secret = models.CharField(max_length=200, blank=True)
    channels = models.JSONField(
        default=list, blank=True, help_text="Channels it serves; empty means all."
    )
    is_default = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization", "-is_default", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "slug"], name="uniq_connector_slug")
        ]

    def __str__(self):
        return f"{self.name} ({self.kind})"

    def serves(self, channel: str) -> bool:
        return not self.channels or channel in self.channels

    def clean(self):
        from integrations.connectors import connector_class
        from integrations.signing import is_valid_secret

        try:
            cls = connector_class(self.kind)
        except ValueError as exc:
            raise ValidationError({"kind": str(exc)}) from exc
        if cls.needs_url:
            if not self.url:
                raise ValidationError({"url": f"a {self.kind} connector needs a URL"})
            from integrations.ssrf import UnsafeURLError, check_url

            try:
                check_url(self.url)
            except UnsafeURLError as exc:
                raise ValidationError({"url": exc.message}) from exc
            if not is_valid_secret(self.secret):
                raise ValidationError({"secret": "a whsec_… secret is required to sign requests"})
        if self.channels is None:
            self.channels = []  # the form's empty field: every channel
        if not isinstance(self.channels, list):
            raise ValidationError({"channels": 'a list of channels, e.g. ["sms", "email"]'})
        bad = [c for c in (self.channels or []) if c not in Channel.values]
        if bad:
            raise ValidationError({"channels": f"unknown channel(s): {', '.join(map(str, bad))}"})

    def as_config(self):
        from integrations.connectors import ConnectorConfig

        return ConnectorConfig(
            id=self.pk,
            organization_id=self.organization_id,
            kind=self.kind,
            name=self.name,
            url=self.url,
            secrets=tuple(s for s in (self.secret, self.previous_secret) if s),
        )


class DeliveryAttempt(models.Model):
    """One send attempt through a connector: outcome, HTTP status, timing, and
    for the console connector the would-be send itself (PHI-free)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attempts_log")
    connector = models.ForeignKey(
        ChannelConnector, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    connector_kind = models.CharField(max_length=40)
    number = models.PositiveIntegerField()
    outcome = models.CharField(max_length=20)
    retryable = models.BooleanField(default=False)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=2000, blank=True)
    record = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"attempt {self.number} of message #{self.message_id}: {self.outcome}"


class CallbackLog(models.Model):
    """A vendor callback as stored: identifiers stripped, with what was stripped."""

    connector = models.ForeignKey(ChannelConnector, on_delete=models.CASCADE, related_name="+")
    webhook_id = models.CharField(max_length=255)
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="callbacks"
    )
    event_type = models.CharField(max_length=20)
    payload = models.JSONField(help_text="The body with identifier fields removed.")
    stripped = models.JSONField(default=list, blank=True, help_text="Paths and kinds removed.")
    outcome = models.CharField(max_length=40)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"callback {self.webhook_id} ({self.event_type})"
