"""Writing domain events to the transactional outbox.

After-commit batching: the outbox ids a transaction writes reach the
registered hooks (the webhook fan-out) in one call per batch after commit,
never for rows that were rolled back. A batch is one `transaction.on_commit`
callback, so Django's own rules decide whether it runs: it is dropped when
the transaction, or a savepoint that was open when it was registered, rolls
back. Ids join the connection's latest batch only when that cannot change
the outcome for them (`_queue_after_commit`); otherwise a new batch starts.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable

from django.db import transaction
from django.utils import timezone

from integrations.event_types import event_type
from integrations.models import OutboxEvent

# Called with (outbox_event_ids) after commit; the webhook dispatcher plugs in.
_after_commit_hooks: list = []
# hook -> interest(organization_ids, event_types) -> {(organization_id, event_type)}
# the hook acts on; a hook without one wants every event.
_hook_interests: dict = {}


def register_after_commit_hook(func, *, interest: Callable | None = None) -> None:
    """Register `func(ids)`, run after commit with the committed outbox ids.

    `interest(organization_ids, event_types)` (optional) returns the
    (organization id, event type) pairs the hook would act on, e.g. those
    some enabled webhook endpoint subscribes to. Writers of many rows use it
    through `outbox_wanted` to stamp the rest dispatched at insert and
    announce only the wanted ones. Without it every event is wanted.
    """
    if func not in _after_commit_hooks:
        _after_commit_hooks.append(func)
    if interest is not None:
        _hook_interests[func] = interest


def outbox_wanted(pairs: Iterable[tuple[int, str]]) -> set[tuple[int, str]]:
    """The (organization id, event type) pairs some after-commit hook acts on.

    One small query per hook that declared an interest (the webhook fan-out:
    enabled endpoints of these organizations); every pair when a hook
    declared none. Events of other pairs need no announcement and can be
    written with `dispatched_at` set (what the fan-out would do after commit
    finding no subscriber). Call it inside the writing transaction.
    """
    pairs = set(pairs)
    hooks = list(_after_commit_hooks)
    if not pairs or not hooks:
        return set()
    wanted: set[tuple[int, str]] = set()
    organization_ids = {org for org, _type in pairs}
    event_types = {name for _org, name in pairs}
    for hook in hooks:
        interest = _hook_interests.get(hook)
        if interest is None:
            return pairs
        wanted |= set(interest(organization_ids, event_types)) & pairs
    return wanted


def outbox_announce(ids: Iterable[int]) -> None:
    """Hand outbox rows written without `outbox_write` (e.g. raw SQL) to the
    after-commit hooks, in the same batch as the transaction's other events.

    Call inside the transaction (or savepoint) that inserted them: they are
    announced after commit, and never if that transaction or savepoint rolls
    back.
    """
    ids = list(ids)
    if not ids or not _after_commit_hooks:
        return
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox_announce must run inside the transaction that wrote the rows")
    _queue_after_commit(ids)


class _PendingBatch:
    """The outbox ids of one after-commit batch, handed to the hooks in one
    call after commit (one fan-out per batch instead of one per event)."""

    __slots__ = ("__weakref__", "fired", "ids", "savepoints")

    def __init__(self, savepoints: frozenset):
        self.ids: list[int] = []
        self.fired = False
        self.savepoints = savepoints

    def __call__(self):
        if self.fired:
            return
        self.fired = True
        ids, self.ids = self.ids, []
        for hook in list(_after_commit_hooks):
            hook(ids)


def _queue_after_commit(ids: list[int]) -> None:
    """Add `ids` to the connection's latest batch, or start one.

    Reusing the latest batch is safe only if it runs exactly when these ids
    commit. Django drops an on_commit callback when the transaction, or a
    savepoint open at registration, rolls back. So the batch must be
    - still registered: not fired, and not dropped by a rollback. We keep only
      a weak reference; Django's pending list holds the one strong
      reference, so a rollback that drops the callback frees the batch at
      once (CPython reference counting; the batch has no reference cycle)
      and a later transaction never reuses it; and
    - registered under every savepoint open now: if we are inside a savepoint
      opened after the batch, that savepoint's rollback would not drop the
      batch, and rolled back rows would be announced. Savepoints it was
      registered under that have since been released are harmless (a
      released savepoint is never rolled back; one rolled back would have
      dropped the batch).
    Only the latest batch is extended, so hooks see ids in write order.
    """
    connection = transaction.get_connection()
    open_now = frozenset(sid for sid in connection.savepoint_ids if sid is not None)
    ref = getattr(connection, "_baton_outbox_batch", None)
    batch = ref() if ref is not None else None
    if batch is None or batch.fired or not open_now <= batch.savepoints:
        batch = _PendingBatch(open_now)
        connection._baton_outbox_batch = weakref.ref(batch)
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
    get the transaction's events in batches (one call per batch; one batch
    per transaction unless it wrote events at several savepoint levels); a
    periodic sweep catches anything they miss. An event no hook wants
    (`outbox_wanted`: no enabled endpoint of the organization subscribes to
    its type) is stored already dispatched and not announced: one small query
    here instead of the fan-out's reads and writes after commit.
    """
    event_type(event_type_name)  # refuse unregistered names
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox_write must run inside the transaction of the change")
    now = timezone.now()
    event = _build(organization, event_type_name, payload, sequence_key, sequence, occurred_at, now)
    wanted = bool(outbox_wanted([(event.organization_id, event_type_name)]))
    if not wanted:
        event.dispatched_at = now  # what the fan-out would do after commit, finding no endpoint
    event.save(force_insert=True)
    if wanted:
        _queue_after_commit([event.pk])
    return event


def outbox_write_many(events: list[dict]) -> list[OutboxEvent]:
    """Append several domain events in one statement, inside the caller's
    transaction (same rules as `outbox_write`). Each item takes
    `outbox_write`'s keyword arguments (`organization`, `event_type_name`,
    `payload`, optional `sequence_key`, `sequence`, `occurred_at`). Events
    keep the given order.

    Events that no after-commit hook wants (`outbox_wanted`: no enabled
    webhook endpoint of the organization subscribes to the type) are written
    already dispatched, which is what the fan-out would do after commit; the
    others reach the hooks together with the transaction's other events.
    """
    if not events:
        return []
    for e in events:
        event_type(e["event_type_name"])  # refuse unregistered names
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
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
    wanted = outbox_wanted((row.organization_id, row.event_type) for row in rows)
    for row in rows:
        if (row.organization_id, row.event_type) not in wanted:
            row.dispatched_at = now
    if connection.vendor == "postgresql":
        _insert_server_bound(connection, rows)
    else:
        rows = OutboxEvent.objects.bulk_create(rows, batch_size=1000)
    announce = [row.pk for row in rows if row.dispatched_at is None]
    if announce and None not in announce:  # None: a backend without RETURNING on bulk inserts
        _queue_after_commit(announce)
    return rows


_INSERT_COLUMNS = (
    "organization_id",
    "event_type",
    "payload",
    "sequence_key",
    "sequence",
    "occurred_at",
    "created_at",
    "dispatched_at",
)


def _insert_server_bound(connection, rows: list[OutboxEvent]) -> None:
    """INSERT the rows on PostgreSQL with server-side parameter binding and
    set their primary keys. Django's cursors bind on the client, quoting
    every JSON payload into the SQL text, which cost more CPU than the
    database spent on the insert (a third of message dispatch); one prepared
    statement run for all rows in a pipeline sends the values as parameters
    instead. Same connection, same transaction as the caller's writes."""
    import psycopg

    meta = OutboxEvent._meta
    quote = connection.ops.quote_name
    payload_field = meta.get_field("payload")
    sql = (
        f"INSERT INTO {quote(meta.db_table)} "  # noqa: S608 (names from the model)
        f"({', '.join(quote(meta.get_field(c).column) for c in _INSERT_COLUMNS)}) "
        f"VALUES ({', '.join(['%s'] * len(_INSERT_COLUMNS))}) RETURNING {quote(meta.pk.column)}"
    )
    params = [
        (
            row.organization_id,
            row.event_type,
            payload_field.get_db_prep_value(row.payload, connection),
            row.sequence_key,
            row.sequence,
            row.occurred_at,
            row.created_at,
            row.dispatched_at,
        )
        for row in rows
    ]
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.executemany(sql, params, returning=True)
        for row in rows:
            row.pk = cursor.fetchone()[0]
            row._state.adding = False
            row._state.db = connection.alias
            cursor.nextset()
