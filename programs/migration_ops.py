"""Migration operations that keep a busy table writable.

`drop_field_index` removes the single-column index Django made for a field
(a foreign key's, usually) once another index leads with that column, or
once no query reads by it, so every insert stops paying for an index no
query needs.

Django's own `AlterField(..., db_index=False)` on a foreign key drops the
foreign-key constraint and adds it back, and adding it back validates every
row while holding a lock that blocks writes to the table: minutes on a
table of partner events or step instances. This operation changes the model
state exactly as that AlterField does, and in the database only drops the
index: on PostgreSQL with `DROP INDEX CONCURRENTLY`, which blocks no
reads or writes. A migration using it must set `atomic = False`
(PostgreSQL refuses CONCURRENTLY inside a transaction).
"""

from django.db import migrations


def drop_field_index(
    app_label: str, model_name: str, name: str, field
) -> migrations.SeparateDatabaseAndState:
    """`AlterField(model_name, name, field)` for a migration of `app_label`,
    where `field` is the same field with `db_index=False`, dropping only the
    index in the database."""

    def drop(apps, schema_editor):
        model = apps.get_model(app_label, model_name)
        connection = schema_editor.connection
        concurrently = "CONCURRENTLY " if connection.vendor == "postgresql" else ""
        for index_name in _own_indexes(connection, model, name):
            schema_editor.execute(
                f"DROP INDEX {concurrently}IF EXISTS {schema_editor.quote_name(index_name)}"
            )

    def create(apps, schema_editor):
        model = apps.get_model(app_label, model_name)
        if not _own_indexes(schema_editor.connection, model, name):
            schema_editor.execute(
                schema_editor._create_index_sql(model, fields=[model._meta.get_field(name)])
            )

    return migrations.SeparateDatabaseAndState(
        state_operations=[migrations.AlterField(model_name=model_name, name=name, field=field)],
        database_operations=[migrations.RunPython(drop, create, elidable=False)],
    )


def _own_indexes(connection, model, field_name: str) -> list[str]:
    """Names of the plain indexes on exactly this field's column."""
    column = model._meta.get_field(field_name).column
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    return [
        index_name
        for index_name, details in constraints.items()
        if details["index"]
        and not details["unique"]
        and not details["primary_key"]
        and details["columns"] == [column]
    ]
