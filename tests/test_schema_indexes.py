"""No index on Baton's tables repeats the leading columns of another.

Such an index serves no query the longer one cannot serve, yet every insert
and every non-HOT update pays for it: a partner event wrote nine index
entries where seven do the work. Django adds one for each foreign key by
default, so a new foreign key whose column leads a composite index or
unique constraint needs `db_index=False` (and, on an existing table,
programs.migration_ops.drop_field_index, which keeps the table writable).
Read from the migrated database, so the migrations are checked as well as
the models."""

import pytest
from django.db import connection

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="reads PostgreSQL's catalog (pg_index); the models are the same on SQLite",
    ),
]

BATON_APPS = ("programs", "integrations", "messaging", "participants")

# An index is redundant when it is not unique, not partial, and its columns
# (with their operator classes) are the first columns of another full index.
REDUNDANT_INDEXES = """
WITH idx AS (
    SELECT i.indrelid::regclass::text AS table_name,
           i.indexrelid::regclass::text AS index_name,
           i.indisunique AS is_unique,
           i.indpred IS NOT NULL AS is_partial,
           i.indexprs IS NOT NULL AS has_expressions,
           string_to_array(i.indkey::text, ' ') AS cols,
           string_to_array(i.indclass::text, ' ') AS opclasses
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema()
)
SELECT a.table_name, a.index_name, b.index_name
FROM idx a
JOIN idx b ON a.table_name = b.table_name AND a.index_name <> b.index_name
WHERE NOT a.is_unique AND NOT a.is_partial AND NOT b.is_partial
  AND NOT a.has_expressions AND NOT b.has_expressions
  AND cardinality(a.cols) <= cardinality(b.cols)
  AND a.cols = b.cols[1:cardinality(a.cols)]
  AND a.opclasses = b.opclasses[1:cardinality(a.cols)]
ORDER BY 1, 2
"""


def _redundant_indexes() -> list[tuple[str, str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(REDUNDANT_INDEXES)
        rows = cursor.fetchall()
    # Django's own many-to-many tables (e.g. integrations_apiclient_programs)
    # come with its indexes; only the apps' model tables are Baton's to shape.
    auto_created = {
        field.remote_field.through._meta.db_table
        for app in BATON_APPS
        for model in _models(app)
        for field in model._meta.local_many_to_many
        if field.remote_field.through._meta.auto_created
    }
    return [
        row
        for row in rows
        if row[0].startswith(tuple(f"{app}_" for app in BATON_APPS)) and row[0] not in auto_created
    ]


def _models(app_label):
    from django.apps import apps

    return apps.get_app_config(app_label).get_models()


def test_no_index_repeats_the_leading_columns_of_another():
    assert _redundant_indexes() == []


def test_the_check_sees_a_redundant_index():
    """The query is not vacuous: an index on a column that leads a unique
    constraint is reported."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE INDEX test_redundant_event_org ON participants_participantevent "
            "(organization_id)"
        )
    assert (
        "participants_participantevent",
        "test_redundant_event_org",
        "uniq_participant_event_id",
    ) in _redundant_indexes()


def _constraint_and_index(table, column):
    """(oid of the foreign-key constraint on `column`, names of the plain
    indexes on exactly `column`)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT con.oid FROM pg_constraint con "
            "JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1] "
            "WHERE con.conrelid = %s::regclass AND con.contype = 'f' AND a.attname = %s",
            [table, column],
        )
        constraint = cursor.fetchone()
        constraints = connection.introspection.get_constraints(cursor, table)
    indexes = [
        name
        for name, details in constraints.items()
        if details["index"] and not details["unique"] and details["columns"] == [column]
    ]
    return constraint[0] if constraint else None, indexes


@pytest.mark.django_db(transaction=True)
def test_dropping_a_covered_index_keeps_the_foreign_key_constraint():
    """programs.migration_ops.drop_field_index: backwards recreates the
    index, forwards drops it again, and the foreign key is never dropped and
    re-added (which would validate every row under a write-blocking lock)."""
    from django.db.migrations.executor import MigrationExecutor

    table, column = "participants_stepinstance", "enrollment_id"
    before = "0006_participant_organization_index_covered"
    constraint, indexes = _constraint_and_index(table, column)
    assert constraint is not None and indexes == []

    executor = MigrationExecutor(connection)
    executor.migrate([("participants", before)])
    try:
        constraint_back, indexes_back = _constraint_and_index(table, column)
        assert len(indexes_back) == 1
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    constraint_forward, indexes_forward = _constraint_and_index(table, column)
    assert indexes_forward == []
    assert constraint_back == constraint_forward == constraint
