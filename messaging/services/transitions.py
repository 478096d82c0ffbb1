"""The one place a message changes state: transition, save, audit, outbox, signal.

Callers hold the row lock (select_for_update) inside `transaction.atomic()`.
A failed or undeliverable message raises a `message_failed` exception
(deduplicated per enrollment and template); a sent or delivered one
auto-resolves it.
"""

from __future__ import annotations

from django.db import connections, models, router
from django.utils import timezone
from django_fsm import can_proceed

from config.request_id import get_request_id
from integrations.outbox import outbox_write, outbox_write_many
from messaging.models import Message, MessageState
from messaging.signals import message_status_batch, message_status_changed
from programs.actors import as_actor
from programs.errors import TransitionNotAllowed
from programs.models import AuditEvent
from programs.services import audit_record, exception_raise, exception_resolve_for

MESSAGE_FAILED = "message_failed"


def failure_dedup_key(message: Message) -> str:
    return f"message_failed:{message.enrollment_id}:{message.template_key}"


def message_payload(message: Message, *, from_state: str, reason: str = "") -> dict:
    """The outbox payload: references and state only, no PHI."""
    return {
        "message_id": message.pk,
        "state": message.state,
        "from_state": from_state,
        "program_id": message.program_id,
        "enrollment_id": message.enrollment_id,
        "step_instance_id": message.step_instance_id,
        "participant_ref": message.participant_ref,
        "channel": message.channel,
        "template_key": message.template_key,
        "template_version": message.template_version,
        "scheduled_for": message.scheduled_for.isoformat() if message.scheduled_for else None,
        "suppression_reason": message.suppression_reason,
        "reason": reason[:500],
        "occurred_at": timezone.now().isoformat(),
    }


def record_change(message: Message, *, from_state: str, actor, reason: str = "", metadata=None):
    """Audit row + outbox event + signal for a change already saved."""
    audit_record(
        actor=actor,
        action=f"message.{message.state}",
        target=message,
        organization=message.organization_id,
        from_state=from_state,
        to_state=message.state,
        reason=reason,
        metadata={
            "enrollment_id": message.enrollment_id,
            "template": f"{message.template_key} v{message.template_version}",
            "channel": message.channel,
            **(metadata or {}),
        },
    )
    outbox_write(
        organization=message.organization_id,
        event_type_name=f"messaging.message.{message.state}",
        payload=message_payload(message, from_state=from_state, reason=reason),
    )
    _after_change(message, from_state=from_state, actor=actor, reason=reason)


def _after_change(message: Message, *, from_state: str, actor, reason: str) -> None:
    """The signal, then the failure item (raise, or resolve after a resend)."""
    message_status_changed.send(
        sender=Message, message=message, from_state=from_state, to_state=message.state
    )
    if message.state in (MessageState.FAILED, MessageState.UNDELIVERABLE):
        if not message.failure_reported:
            Message.objects.filter(pk=message.pk).update(failure_reported=True)
            message.failure_reported = True
        exception_raise(
            organization=message.organization_id,
            program=message.program_id,
            kind=MESSAGE_FAILED,
            title=f"Message {message.template_key} ({message.get_channel_display()}) "
            f"{message.state} for {message.participant_ref}",
            detail=message.last_error or reason,
            dedup_key=failure_dedup_key(message),
            subject=message,
            actor=actor,
            context={"message_id": message.pk, "enrollment_id": message.enrollment_id},
        )
    elif message.failure_reported and message.state in (MessageState.SENT, MessageState.DELIVERED):
        # Only a message that failed before (then was resent) can have an open item.
        exception_resolve_for(
            organization=message.organization_id,
            dedup_key=failure_dedup_key(message),
            actor=actor,
            note=f"message #{message.pk} {message.state}",
        )


def apply_transition(
    message: Message, name: str, *, actor, reason: str = "", metadata=None, **kwargs
) -> Message:
    """Run transition `name` on a locked message and record it. Raises
    TransitionNotAllowed naming the allowed transitions."""
    method = getattr(message, name)
    if not can_proceed(method):
        raise TransitionNotAllowed(
            obj_label=f"message #{message.pk}",
            transition=name,
            current_state=message.state,
            allowed=[t.name for t in message.get_available_state_transitions()],
        )
    from_state = message.state
    method(**kwargs)
    message.save()
    record_change(message, from_state=from_state, actor=actor, reason=reason, metadata=metadata)
    return message


def check_transition(message: Message, name: str) -> None:
    """Raise TransitionNotAllowed unless transition `name` may run now."""
    if not can_proceed(getattr(message, name)):
        raise TransitionNotAllowed(
            obj_label=f"message #{message.pk}",
            transition=name,
            current_state=message.state,
            allowed=[t.name for t in message.get_available_state_transitions()],
        )


def bulk_save(messages: list[Message], fields: list[str]) -> None:
    """Write `fields` of many locked messages with one parameterised UPDATE
    run through executemany (one round trip on SQLite, a pipeline on
    psycopg). Their transitions already ran in memory, checked by django-fsm;
    the caller holds the row locks. `updated_at` is always written."""
    if not messages:
        return
    fields = [f for f in fields if f != "updated_at"] + ["updated_at"]
    now = timezone.now()
    for message in messages:
        message.updated_at = now
    connection = connections[router.db_for_write(Message)]
    meta = Message._meta
    model_fields = [meta.get_field(name) for name in fields]
    qn = connection.ops.quote_name
    # Identifiers come from the model's own metadata, quoted; values are parameters.
    sql = "UPDATE {} SET {} WHERE {} = %s".format(  # noqa: S608
        qn(meta.db_table),
        ", ".join(f"{qn(f.column)} = %s" for f in model_fields),
        qn(meta.pk.column),
    )
    preps = [(f.attname, _preparer(f, connection)) for f in model_fields]
    params = [[prep(getattr(m, name)) for name, prep in preps] + [m.pk] for m in messages]
    executemany(connection, sql, params)


def executemany(connection, sql: str, params: list) -> None:
    """Run `sql` once per parameter row in one round trip.

    PostgreSQL: on a server-side-binding psycopg cursor over Django's own
    connection (same transaction). Django's cursors bind client-side, which
    merges every parameter into the SQL text in Python: most of the cost of a
    few thousand rows. Server-side binding pipelines one prepared statement
    instead. (Not seen by Django's query logging.) Other backends: Django's
    cursor."""
    if connection.vendor == "postgresql":
        import psycopg

        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.executemany(sql, params)
        return
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


# Field types whose Python values (as services build them: str, int, bool,
# None, ids) go to the driver unchanged; `get_db_prep_save` would only
# re-check them, once per value.
_PASS_THROUGH = {
    "AutoField",
    "BigAutoField",
    "BigIntegerField",
    "BooleanField",
    "CharField",
    "IntegerField",
    "PositiveBigIntegerField",
    "PositiveIntegerField",
    "PositiveSmallIntegerField",
    "SlugField",
    "SmallIntegerField",
    "TextField",
}


def _preparer(field, connection):
    """value -> database value for `field`, cheap for the common types.
    Datetimes (the same `now` on a whole batch) are converted once each."""
    internal = field.get_internal_type()
    if field.is_relation:
        internal = field.target_field.get_internal_type()
    if internal in _PASS_THROUGH:
        return _identity
    if internal == "DateTimeField":
        seen = {}

        def prep_datetime(value):
            if value is None:
                return None
            if value not in seen:
                seen[value] = field.get_db_prep_save(value, connection=connection)
            return seen[value]

        return prep_datetime
    return lambda value: field.get_db_prep_save(value, connection=connection)


def _identity(value):
    return value


def insert_rows(model, rows: list[dict]) -> None:
    """Insert `rows` (dicts keyed by field attname) into `model`'s table with
    one parameterised INSERT run through executemany, skipping model
    instances and the ORM's per-value SQL compilation (the bulk of a
    `bulk_create` on thousands of rows). Fields a row leaves out take their
    default, evaluated once per call. No ids come back; the rows get no
    signals, exactly like `bulk_create`."""
    if not rows:
        return
    connection = connections[router.db_for_write(model)]
    meta = model._meta
    fields = [
        f
        for f in meta.concrete_fields
        if not f.primary_key
        and (f.attname in rows[0] or f.db_default is models.NOT_PROVIDED)  # else the DB fills it
    ]
    defaults = {f.attname: f.get_default() for f in fields if f.attname not in rows[0]}
    qn = connection.ops.quote_name
    # Identifiers come from the model's own metadata, quoted; values are parameters.
    sql = "INSERT INTO {} ({}) VALUES ({})".format(  # noqa: S608
        qn(meta.db_table),
        ", ".join(qn(f.column) for f in fields),
        ", ".join(["%s"] * len(fields)),
    )
    prepared_defaults = {
        name: field.get_db_prep_save(defaults[name], connection=connection)
        for field in fields
        if (name := field.attname) in defaults
    }
    preps = [(f.attname, _preparer(f, connection)) for f in fields]
    params = [
        [prep(row[name]) if name in row else prepared_defaults[name] for name, prep in preps]
        for row in rows
    ]
    executemany(connection, sql, params)


def record_changes(changes: list[tuple], *, actor) -> None:
    """Audit rows, outbox events, signals and failure items for many changes
    already saved (`bulk_save`). `changes` come from `transition_in_memory`,
    in the order they happened. One audit INSERT and one outbox INSERT for
    the lot; every change still gets its own audit row (`message.<state>`)
    and its own `messaging.message.<state>` event, and
    `message_status_changed` is sent per change, in order, inside the
    caller's transaction."""
    if not changes:
        return
    actor = as_actor(actor)
    now = timezone.now()
    request_id = get_request_id()
    audits, events = [], []
    actor_fields = {
        "created_at": now,
        "actor_kind": actor.kind,
        "actor_id": actor.id,
        "actor_label": actor.label[:200],
        "object_type": "messaging.message",
        "request_id": request_id,
    }
    for message, from_state, to_state, payload, reason, metadata in changes:
        audits.append(
            {
                **actor_fields,
                "organization_id": message.organization_id,
                "action": f"message.{to_state}",
                "object_id": str(message.pk),
                "from_state": from_state or "",
                "to_state": to_state,
                "reason": reason or "",
                "metadata": {
                    "enrollment_id": message.enrollment_id,
                    "template": f"{message.template_key} v{message.template_version}",
                    "channel": message.channel,
                    **(metadata or {}),
                },
            }
        )
        events.append(
            {
                "organization": message.organization_id,
                "event_type_name": f"messaging.message.{to_state}",
                "payload": payload,
            }
        )
    insert_rows(AuditEvent, audits)
    outbox_write_many(events)
    distinct = list({id(m): m for m, *_rest in changes}.values())
    message_status_batch.send(sender=Message, messages=distinct)
    for message, from_state, to_state, _payload, reason, _metadata in changes:
        if to_state == message.state:
            _after_change(message, from_state=from_state, actor=actor, reason=reason)
        else:
            # An intermediate change (sent, then delivered in the same batch):
            # the signal reports it; failure items concern the final state only.
            message_status_changed.send(
                sender=Message, message=message, from_state=from_state, to_state=to_state
            )


def transition_in_memory(
    message: Message, name: str, changes: list, *, reason: str = "", metadata=None, **kwargs
) -> None:
    """Run transition `name` in memory (checked by django-fsm; raises
    TransitionNotAllowed) and queue its record for `record_changes`. The
    caller saves the message (`bulk_save`) before calling `record_changes`."""
    check_transition(message, name)
    from_state = message.state
    getattr(message, name)(**kwargs)
    payload = message_payload(message, from_state=from_state, reason=reason)
    changes.append((message, from_state, message.state, payload, reason, metadata))
