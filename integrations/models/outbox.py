"""Partner integration state: the transactional outbox (and, later, API
clients, webhook endpoints and deliveries)."""

from django.db import models
from django.utils import timezone

from programs.models import Organization


class OutboxEvent(models.Model):
    """A domain event, written in the same transaction as the change behind it.

    Dispatched after commit (and by a periodic sweep for anything left
    behind). Payloads are thin: ids, references, states, timestamps; no PHI.
    `sequence` orders events of one `sequence_key` (e.g. one enrollment).
    """

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    event_type = models.CharField(max_length=100, db_index=True)
    payload = models.JSONField()
    sequence_key = models.CharField(max_length=100, blank=True)
    sequence = models.PositiveIntegerField(null=True, blank=True)
    occurred_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    dispatched_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["sequence_key", "sequence"],
                condition=models.Q(sequence__isnull=False),
                name="uniq_outbox_sequence",
            )
        ]

    def __str__(self):
        return f"{self.event_type} #{self.pk}"
