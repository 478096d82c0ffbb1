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

    # No database-level foreign key: with one, every insert takes a KEY SHARE
    # lock on the parent row, and concurrent writers of one organization turn
    # that row into a MultiXact rewritten on each insert (and checked at
    # commit: the constraints are deferred). This table is an append-only
    # log like the audit trail (which has none either); the parent is never
    # deleted while rows point at it (organizations are PROTECTed by the ORM).
    # Nor an index: nothing reads the outbox by organization or by creation
    # time (the dispatcher reads undispatched rows by id; webhooks go out
    # per delivery), so the sweep's and every writer's rows enter only the
    # primary key and the sequence index.
    organization = models.ForeignKey(
        Organization,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    event_type = models.CharField(max_length=100)
    payload = models.JSONField()
    sequence_key = models.CharField(max_length=100, blank=True)
    sequence = models.PositiveIntegerField(null=True, blank=True)
    occurred_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["sequence_key", "sequence"],
                condition=models.Q(sequence__isnull=False),
                name="uniq_outbox_sequence",
            )
        ]
        indexes = [
            # The dispatcher's sweep reads undispatched events in id order.
            # Nearly every row is dispatched, most of them at insert (no
            # subscriber): a partial index they never enter.
            models.Index(
                fields=["id"],
                condition=models.Q(dispatched_at__isnull=True),
                name="outbox_undispatched_idx",
            )
        ]

    def __str__(self):
        return f"{self.event_type} #{self.pk}"
