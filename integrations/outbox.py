"""Writing domain events to the transactional outbox."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from integrations.event_types import event_type
from integrations.models import OutboxEvent

# Called with (outbox_event_ids) after commit; the webhook dispatcher plugs in.
_after_commit_hooks: list = []


def register_after_commit_hook(func) -> None:
    if func not in _after_commit_hooks:
        _after_commit_hooks.append(func)


class _PendingBatch:
    """The outbox ids written in one transaction, handed to the hooks in one
    call after commit (one fan-out per commit instead of one per event)."""

    __slots__ = ("fired", "ids")

    def __init__(self):
        self.ids: list[int] = []
        self.fired = False

    def __call__(self):
        if self.fired:
            return
        self.fired = True
        ids, self.ids = self.ids, []
        for hook in list(_after_commit_hooks):
            hook(ids)


def _queue_after_commit(ids: list[int]) -> None:
    connection = transaction.get_connection()
    batch = getattr(connection, "_baton_outbox_batch", None)
    # Reuse the batch only while its callback is the latest one registered:
    # a rolled back savepoint or transaction drops the callback (and with it
    # the rows), and other callbacks registered since then should keep
    # running after these events' hooks, in order; both start a new batch.
    pending = connection.run_on_commit
    if batch is None or batch.fired or not pending or pending[-1][1] is not batch:
        batch = _PendingBatch()
        connection._baton_outbox_batch = batch
        transaction.on_commit(batch)
    batch.ids.extend(ids)


def _build(organization, event_type_name, payload, sequence_key, sequence, occurred_at, now):
    event_type(event_type_name)  # refuse unregistered names
    return OutboxEvent(
        organization_id=getattr(organization, "pk", organization),
        event_type=event_type_name,
        payload=payload,
        sequence_key=sequence_key or "",
        sequence=sequence,
        occurred_at=occurred_at or now,
    )


def outbox_write(
    *,
    organization,
    event_type_name: str,
    payload: dict,
    sequence_key: str = "",
    sequence: int | None = None,
    occurred_at=None,
) -> OutboxEvent:
    """Append a domain event to the outbox inside the caller's transaction.

    Must be called within `transaction.atomic()` together with the change it
    describes (rolls back with it). After commit the registered dispatch hooks
    run once for all the events the transaction wrote; a periodic sweep
    catches anything they miss.
    """
    event_type(event_type_name)  # refuse unregistered names
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox_write must run inside the transaction of the change")
    event = _build(
        organization, event_type_name, payload, sequence_key, sequence, occurred_at, timezone.now()
    )
    event.save(force_insert=True)
    if _after_commit_hooks:
        _queue_after_commit([event.pk])
    return event


def outbox_write_many(events: list[dict]) -> list[OutboxEvent]:
    """Append several domain events in one INSERT, inside the caller's
    transaction (same rules as `outbox_write`). Each item takes
    `outbox_write`'s keyword arguments (`organization`, `event_type_name`,
    `payload`, optional `sequence_key`, `sequence`, `occurred_at`). Events
    keep the given order; the after-commit hooks get their ids together with
    the transaction's other events."""
    if not events:
        return []
    for e in events:
        event_type(e["event_type_name"])  # refuse unregistered names
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox_write_many must run inside the transaction of the change")
    now = timezone.now()
    rows = [
        _build(
            e["organization"],
            e["event_type_name"],
            e["payload"],
            e.get("sequence_key", ""),
            e.get("sequence"),
            e.get("occurred_at"),
            now,
        )
        for e in events
    ]
    created = OutboxEvent.objects.bulk_create(rows, batch_size=1000)
    if _after_commit_hooks:
        ids = [e.pk for e in created]
        if None in ids:  # a backend that cannot return ids from a bulk insert
            ids = None
        if ids is not None:
            _queue_after_commit(ids)
    return created
