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
    run; a periodic sweep catches anything they miss.
    """
    event_type(event_type_name)  # refuse unregistered names
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox_write must run inside the transaction of the change")
    event = OutboxEvent.objects.create(
        organization_id=getattr(organization, "pk", organization),
        event_type=event_type_name,
        payload=payload,
        sequence_key=sequence_key,
        sequence=sequence,
        occurred_at=occurred_at or timezone.now(),
    )
    if _after_commit_hooks:
        transaction.on_commit(lambda: [hook([event.pk]) for hook in _after_commit_hooks])
    return event
