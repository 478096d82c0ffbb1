"""Partner API clients (hashed keys), idempotency records, and the per-program
PHI allowlist.

A key looks like `btn_<prefix>_<secret>`. Only its SHA-256 digest is stored;
the prefix identifies the row, the digest is compared in constant time. The
key carries 256 bits of entropy, so a fast digest is enough (a slow password
hash would add latency to every request and protect nothing more).
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from programs.models import Organization, Program


class ApiPermission(models.TextChoices):
    READ = "read", "Read only"
    WRITE = "write", "Read and write"


class ApiClient(models.Model):
    """A partner system's credential: one organization, optional program scopes."""

    is_api_client = True  # lets programs.actors.as_actor recognise it

    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="api_clients"
    )
    name = models.CharField(max_length=100, help_text="Who uses this key, e.g. 'EHR referrals'.")
    prefix = models.CharField(
        max_length=16, unique=True, editable=False, help_text="Identifies the key in logs."
    )
    key_hash = models.CharField(max_length=64, editable=False)
    programs = models.ManyToManyField(
        Program,
        blank=True,
        related_name="+",
        help_text="Limit the key to these programs. Empty: every program of the organization.",
    )
    permission = models.CharField(
        max_length=10, choices=ApiPermission.choices, default=ApiPermission.WRITE
    )
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="The key stops working at this time."
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.CharField(max_length=200, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["organization", "name"]
        verbose_name = "API client"

    def __str__(self):
        return f"{self.name} ({self.prefix})"

    @property
    def is_authenticated(self) -> bool:  # DRF treats request.user as this client
        return True

    @property
    def can_write(self) -> bool:
        return self.permission == ApiPermission.WRITE

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, now=None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    @property
    def is_usable(self) -> bool:
        return not self.is_revoked and not self.is_expired()


class IdempotencyRecord(models.Model):
    """One `Idempotency-Key` of one API client (IETF httpapi idempotency draft).

    `status_code` stays null while the first request is in flight; the final
    status and exact response bytes are kept for replays for 24 hours.
    """

    # No database-level foreign key, as on OutboxEvent (why: there); a key
    # deleted through the ORM takes its records with it (CASCADE).
    # No index of its own either: uniq_idempotency_key (api_client, key) leads with it.
    api_client = models.ForeignKey(
        ApiClient, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=300)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.BinaryField(null=True, blank=True)
    response_content_type = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_client", "key"], name="uniq_idempotency_key")
        ]

    def __str__(self):
        return f"{self.api_client_id}:{self.key}"


class ProgramPhiAllowance(models.Model):
    """A JSON path the PHI guard lets through for one program (audited).

    Paths use the guard's notation, e.g. `$.data.device.serial_number`; `[*]`
    matches any array index. Only for fields a compliance review approved.
    """

    # no index of its own: uniq_phi_allowance (program, json_path) leads with it
    program = models.ForeignKey(
        Program, on_delete=models.CASCADE, related_name="phi_allowances", db_index=False
    )
    json_path = models.CharField(max_length=300, help_text="e.g. $.data.device.serial_number")
    reason = models.TextField(help_text="Why this field may carry an identifier (audited).")
    created_by = models.CharField(max_length=200, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = "PHI allowance"
        constraints = [
            models.UniqueConstraint(fields=["program", "json_path"], name="uniq_phi_allowance")
        ]

    def __str__(self):
        return f"{self.program}: {self.json_path}"

    def clean(self):
        from django.core.exceptions import ValidationError

        from integrations.phi import valid_json_path

        if self.json_path and not valid_json_path(self.json_path):
            raise ValidationError(
                {"json_path": "Use a JSON path like $.data.device.serial_number ([*] for lists)."}
            )
