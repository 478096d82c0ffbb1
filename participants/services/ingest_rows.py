"""Hand-written SQL for the hot reads and writes of event ingestion.

Every partner event runs these, single or in batches of 500, so they are
written once as SQL instead of compiled ORM queries (integrations/rows.py
explains why), and shaped for what the row loading costs in Python:

- a list of values is one array parameter on PostgreSQL (`= ANY(%s)`), not
  one placeholder each: the statement text stays short and the driver
  caches its parsing instead of re-parsing 500 placeholders per batch;
- columns repeated on every row are not fetched on every row: the programs
  and versions of the enrollments come from a second, small query rather
  than a join, because a version carries its whole workflow definition (a
  JSON document) and a batch reads hundreds of enrollments of one program.
  Measured on a 500-event batch (440 enrollments): the locked read took
  27 ms with the join and 14 ms without those columns (docs/performance.md).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import NamedTuple

from django.db import transaction

from integrations.rows import columns, one_of, set_related
from participants.models import (
    NON_TERMINAL_STATES,
    Enrollment,
    Participant,
    ParticipantEvent,
    StepInstance,
)
from programs.models import Program, ProgramVersion


def read_enrollments(organization_id, refs, program_ids, *, lock=True):
    """{external_ref: [enrollment, ...]}: the non-terminal enrollments of the
    participants with these references (in `program_ids` only, when given),
    locked unless `lock` is False (FOR UPDATE of the enrollment rows only, in
    ascending ids), with participant, program and version attached.

    Read their steps with `steps_by_enrollment`, in a statement of its own
    after this one: a statement that waits for a row lock returns the newest
    version of the locked row, but the rows it joins come from the snapshot
    it started with (PostgreSQL, READ COMMITTED), so steps joined here could
    miss what the transaction it waited for changed.

    For one reference (the single-event path: a participant has a few
    enrollments) programs and versions come in the same statement, because a
    round trip costs more than repeating their columns on a few rows; for
    more, from a second query (see the module docstring). PostgreSQL
    re-checks the state of a row it waited for, so an enrollment that just
    became terminal is left out."""
    by_ref: dict[str, list[Enrollment]] = {}
    refs = list(refs)
    if not refs:
        return by_ref
    if program_ids is not None:
        program_ids = list(program_ids)
        if not program_ids:
            return by_ref
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    using = connection.alias
    join_versions = len(refs) == 1
    parts = [columns(Enrollment, "e", using), columns(Participant, "p", using)]
    joins = (
        f"JOIN {quote(Participant._meta.db_table)} p "
        f"ON p.{quote('id')} = e.{quote('participant_id')}"
    )
    if join_versions:
        parts += [columns(ProgramVersion, "v", using), columns(Program, "g", using)]
        joins += (
            f" JOIN {quote(ProgramVersion._meta.db_table)} v "
            f"ON v.{quote('id')} = e.{quote('program_version_id')} "
            f"JOIN {quote(Program._meta.db_table)} g ON g.{quote('id')} = v.{quote('program_id')}"
        )
    where, params = _enrollments_where(connection, organization_id, refs, program_ids)
    sql = (
        f"SELECT {', '.join(part.sql for part in parts)} "  # noqa: S608
        f"FROM {quote(Enrollment._meta.db_table)} e {joins} "
        f"WHERE {where} ORDER BY e.{quote('id')}{_lock_clause(connection) if lock else ''}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    participants: dict[int, Participant] = {}
    versions: dict[int, ProgramVersion] = {}
    enrollments: list[Enrollment] = []
    for row in rows:
        enrollment = parts[0].load(row)
        enrollments.append(enrollment)
        participant = participants.get(enrollment.participant_id)
        if participant is None:
            participant = participants[enrollment.participant_id] = parts[1].load(
                row, parts[0].width
            )
        set_related(enrollment, "participant", participant)
        by_ref.setdefault(participant.external_ref, []).append(enrollment)
        if join_versions:
            version = versions.get(enrollment.program_version_id)
            if version is None:
                offset = parts[0].width + parts[1].width
                version = versions[enrollment.program_version_id] = parts[2].load(row, offset)
                set_related(version, "program", parts[3].load(row, offset + parts[2].width))
            set_related(enrollment, "program_version", version)
            set_related(enrollment, "program", version.program)
    if not join_versions:
        _attach_versions(connection, enrollments)
    return by_ref


def _lock_clause(connection) -> str:
    if not connection.features.has_select_for_update:
        return ""
    return " FOR UPDATE OF e" if connection.features.has_select_for_update_of else " FOR UPDATE"


def _enrollments_where(connection, organization_id, refs, program_ids) -> tuple[str, list]:
    """The WHERE of the non-terminal enrollments (alias e, participant p) of
    these references, in these programs (None: any)."""
    quote = connection.ops.quote_name
    conditions = [f"p.{quote('organization_id')} = %s"]
    params = [organization_id]
    for column_sql, values in (
        (f"p.{quote('external_ref')}", list(refs)),
        (f"e.{quote('state')}", list(NON_TERMINAL_STATES)),
        (f"e.{quote('program_id')}", program_ids),
    ):
        if values is not None:
            condition, values_params = one_of(connection, column_sql, values)
            conditions.append(condition)
            params += values_params
    return " AND ".join(conditions), params


def marks(enrollments, steps_by_enrollment) -> tuple[dict, dict]:
    """What a plan read of these enrollments and steps and a concurrent change
    would move: each enrollment's state and version; each step's enrollment
    and state; and which rows exist."""
    return (
        {e.pk: (e.state, e.program_version_id) for e in enrollments},
        {s.pk: (s.enrollment_id, s.state) for rows in steps_by_enrollment.values() for s in rows},
    )


class LockedRead(NamedTuple):
    marks: tuple[dict, dict]
    counters: dict[int, tuple[int, datetime | None]]  # id: (event sequence, last event at)


def lock_and_read_marks(organization_id, refs, program_ids) -> LockedRead | None:
    """Lock the non-terminal enrollments of these references (ascending ids,
    as `read_enrollments` does) and return their `marks` as they are now,
    with each enrollment's event sequence and last event time; two narrow
    queries (no JSON), the steps in the second (see `read_enrollments`).

    None on a database without row locks (SQLite): there a transaction reads
    one snapshot throughout, and its first write fails if another connection
    wrote since (SQLITE_BUSY_SNAPSHOT), so what was read is still current."""
    connection = transaction.get_connection()
    if not connection.features.has_select_for_update:
        return None
    quote = connection.ops.quote_name
    where, params = _enrollments_where(connection, organization_id, refs, program_ids)
    enrollment_sql = (
        f"SELECT e.{quote('id')}, e.{quote('state')}, e.{quote('program_version_id')}, "  # noqa: S608
        f"e.{quote('event_sequence')}, e.{quote('last_event_at')} "
        f"FROM {quote(Enrollment._meta.db_table)} e "
        f"JOIN {quote(Participant._meta.db_table)} p "
        f"ON p.{quote('id')} = e.{quote('participant_id')} "
        f"WHERE {where} ORDER BY e.{quote('id')}{_lock_clause(connection)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(enrollment_sql, params)
        rows = cursor.fetchall()
        enrollments = {row[0]: (row[1], row[2]) for row in rows}
        counters = {row[0]: (row[3], row[4]) for row in rows}
        steps = {}
        if enrollments:
            condition, step_params = one_of(connection, quote("enrollment_id"), list(enrollments))
            cursor.execute(
                f"SELECT {quote('id')}, {quote('enrollment_id')}, {quote('state')} "  # noqa: S608
                f"FROM {quote(StepInstance._meta.db_table)} WHERE {condition}",
                step_params,
            )
            steps = {row[0]: (row[1], row[2]) for row in cursor.fetchall()}
    return LockedRead((enrollments, steps), counters)


def _attach_versions(connection, enrollments) -> None:
    """Attach each enrollment's program and version, one query for all."""
    version_ids = sorted({e.program_version_id for e in enrollments})
    if not version_ids:
        return
    quote = connection.ops.quote_name
    program_cols = columns(Program, "g", connection.alias)
    version_cols = columns(ProgramVersion, "v", connection.alias)
    condition, params = one_of(connection, f"v.{quote('id')}", version_ids)
    sql = (
        f"SELECT {version_cols.sql}, {program_cols.sql} "  # noqa: S608
        f"FROM {quote(ProgramVersion._meta.db_table)} v "
        f"JOIN {quote(Program._meta.db_table)} g ON g.{quote('id')} = v.{quote('program_id')} "
        f"WHERE {condition}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    versions, programs = {}, {}
    for row in rows:
        version = versions[row[0]] = version_cols.load(row)
        if version.program_id not in programs:
            programs[version.program_id] = program_cols.load(row, version_cols.width)
        set_related(version, "program", programs[version.program_id])
    for enrollment in enrollments:
        version = versions[enrollment.program_version_id]
        set_related(enrollment, "program_version", version)
        set_related(enrollment, "program", programs[enrollment.program_id])


def steps_by_enrollment(enrollments) -> dict[int, list[StepInstance]]:
    """The steps of these enrollments (ordered by enrollment, id), one query."""
    steps: dict[int, list[StepInstance]] = {e.pk: [] for e in enrollments}
    if not steps:
        return steps
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    step_cols = columns(StepInstance, "s", connection.alias)
    condition, params = one_of(connection, f"s.{quote('enrollment_id')}", list(steps))
    sql = (
        f"SELECT {step_cols.sql} FROM {quote(StepInstance._meta.db_table)} s "  # noqa: S608
        f"WHERE {condition} ORDER BY s.{quote('enrollment_id')}, s.{quote('id')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for row in cursor.fetchall():
            step = step_cols.load(row)
            steps[step.enrollment_id].append(step)
    return steps


def insert_new_events(events: list[ParticipantEvent]) -> set[str]:
    """INSERT the events, skipping those whose (organization, event_id) is
    already stored (`ON CONFLICT DO NOTHING`, no savepoint, no error); set the
    pk of the inserted ones and return their event ids."""
    if not events:
        return set()
    connection = transaction.get_connection()
    meta = ParticipantEvent._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    size = max(1, connection.ops.bulk_batch_size(fields, events) or len(events))
    row_sql = f"({', '.join(['%s'] * len(fields))})"
    # SQL by hand (the ORM's InsertQuery cannot say which rows were skipped);
    # values go through each field's get_db_prep_save, as the ORM does.
    insert = f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)})"
    if connection.vendor == "postgresql":
        suffix = " ON CONFLICT DO NOTHING"
    else:  # SQLite: INSERT OR IGNORE
        insert = insert.replace("INSERT INTO", "INSERT OR IGNORE INTO", 1)
        suffix = ""
    suffix += f" RETURNING {quote(meta.pk.column)}, {quote('event_id')}"
    inserted: dict[str, int] = {}
    if connection.vendor == "postgresql" and len(events) > 1:
        # The rows as one JSON document (INSERT ... SELECT FROM
        # jsonb_to_recordset): json.dumps and the server's JSON parser are C,
        # where one array parameter per column had the driver adapt every
        # value in Python (500 events: 21 ms -> see docs/performance.md). The
        # values are plain str/int/bool/aware datetime/None (no field has
        # auto_now or a custom prep); datetimes go as ISO 8601 with offset.
        records = []
        for event in events:
            record = {}
            for f in fields:
                value = getattr(event, f.attname)
                record[f.column] = value.isoformat() if isinstance(value, datetime) else value
            records.append(record)
        names = ", ".join(quote(f.column) for f in fields)
        types = ", ".join(
            f"{quote(f.column)} "
            + ("jsonb" if f.get_internal_type() == "JSONField" else f.db_type(connection))
            for f in fields
        )
        encoders = {f.encoder for f in fields if f.get_internal_type() == "JSONField"} - {None}
        sql = (
            f"INSERT INTO {quote(meta.db_table)} ({names}) "  # noqa: S608
            f"SELECT {names} FROM jsonb_to_recordset(%s::jsonb) AS u({types})"
            f" ON CONFLICT DO NOTHING RETURNING {quote(meta.pk.column)}, {quote('event_id')}"
        )
        document = json.dumps(records, cls=encoders.pop() if encoders else None)
        with connection.cursor() as cursor:
            cursor.execute(sql, [document])
            inserted.update((event_id, pk) for pk, event_id in cursor.fetchall())
        chunks = []
    else:
        chunks = [events[start : start + size] for start in range(0, len(events), size)]
    for chunk in chunks:
        params = [
            f.get_db_prep_save(f.pre_save(event, True), connection)
            for event in chunk
            for f in fields
        ]
        sql = f"{insert} VALUES {', '.join([row_sql] * len(chunk))}{suffix}"
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            inserted.update((event_id, pk) for pk, event_id in cursor.fetchall())
    for event in events:
        pk = inserted.get(event.event_id)
        if pk is not None:
            event.pk = pk
            event._state.adding = False
            event._state.db = connection.alias
    return set(inserted)


def update_rows(model, objs, field_names) -> None:
    """Write these fields of these rows in one statement. PostgreSQL: an
    UPDATE joined to one array per column (unnest), whose cost grows with the
    rows; bulk_update's CASE WHEN per row and column grows with their square.
    Elsewhere: bulk_update. One row, anywhere: a plain UPDATE by key."""
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    meta = model._meta
    fields = [meta.get_field(name) for name in field_names]
    pk = meta.pk
    if len(objs) == 1:
        # One row (a single event's enrollment or step): a plain UPDATE by
        # key. PostgreSQL planned the array form anew on every execution,
        # prepared or not (its parameter types follow the values).
        (obj,) = objs
        sql = (
            f"UPDATE {quote(meta.db_table)} SET "  # noqa: S608
            + ", ".join(f"{quote(f.column)} = %s" for f in fields)
            + f" WHERE {quote(pk.column)} = %s"
        )
        params = [f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields]
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, obj.pk])
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_update(objs, field_names)
        return
    arrays = [([obj.pk for obj in objs], f"{pk.db_type(connection)}[]")]
    for f in fields:
        arrays.append(
            (
                [f.get_db_prep_save(getattr(obj, f.attname), connection) for obj in objs],
                f"{f.db_type(connection)}[]",
            )
        )
    names = [pk.column] + [f.column for f in fields]
    sql = (
        f"UPDATE {quote(meta.db_table)} AS t SET "  # noqa: S608
        + ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in fields)
        + f" FROM unnest({', '.join(f'%s::{cast}' for _, cast in arrays)}) "
        + f"AS v({', '.join(quote(n) for n in names)}) "
        + f"WHERE t.{quote(pk.column)} = v.{quote(pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [values for values, _ in arrays])


def stored_events(organization_id, event_ids) -> dict[str, ParticipantEvent]:
    """{event id: stored event} for those of these ids already stored (a
    retried batch; normally none): a query of the ids (the unique index
    answers it), then the rows only when some exist."""
    event_ids = list(event_ids)
    if not event_ids:
        return {}
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    condition, params = one_of(connection, quote("event_id"), event_ids)
    sql = (
        f"SELECT {quote('event_id')} FROM {quote(ParticipantEvent._meta.db_table)} "  # noqa: S608
        f"WHERE {quote('organization_id')} = %s AND {condition}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [organization_id, *params])
        found = [row[0] for row in cursor.fetchall()]
    if not found:
        return {}
    return {
        event.event_id: event
        for event in ParticipantEvent.objects.filter(
            organization_id=organization_id, event_id__in=found
        )
    }
