"""Model instances from hand-written SQL, for the few hot reads of the
partner API (key lookup, the enrollments and steps an event touches).

Compiling an ORM query with joins costs about as much CPU as running it
(~0.5-1 ms each on the bench machine). These reads run on every event, so
they are written once as SQL; `Columns` lists a model's columns under a table
alias and turns the matching slice of a row into an instance, applying the
same database converters the ORM applies (datetimes and JSON on SQLite, JSON
on PostgreSQL), so the instances are the ones a QuerySet would return.
"""

from __future__ import annotations

from django.db import connections
from django.db.models import Model, signals
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute


class Columns:
    """A model's concrete columns as `alias.column, ...` and a row-slice loader."""

    def __init__(self, model, alias: str, using: str = "default"):
        connection = connections[using]
        quote = connection.ops.quote_name
        fields = model._meta.concrete_fields
        self.model = model
        self.using = using
        self.sql = ", ".join(f"{alias}.{quote(f.column)}" for f in fields)
        self.attnames = [f.attname for f in fields]
        self.width = len(fields)
        self.plain = _plain_model(model)
        self.converters = []
        for index, field in enumerate(fields):
            column = field.get_col(alias)
            found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            if found:
                self.converters.append((index, column, found))

    def load(self, row, start: int = 0):
        """The instance held by row[start:start + width]."""
        values = list(row[start : start + self.width])
        if self.converters:
            connection = connections[self.using]
            for index, column, found in self.converters:
                value = values[index]
                for converter in found:
                    value = converter(value, column, connection)
                values[index] = value
        if not self.plain:
            return self.model.from_db(self.using, self.attnames, values)
        # What Model.__init__ does with one positional value per field, for a
        # model where that is only attribute assignment (see _plain_model).
        instance = self.model.__new__(self.model)
        instance.__dict__.update(zip(self.attnames, values, strict=True))
        state = instance._state = ModelState()
        state.adding = False
        state.db = self.using
        return instance


def _plain_model(model) -> bool:
    """True when building an instance is plain attribute assignment: no
    custom __init__ or from_db, no pre/post_init receivers, and only Django's
    own field descriptors (which read and write instance.__dict__)."""
    if model.__init__ is not Model.__init__ or model.from_db.__func__ is not Model.from_db.__func__:
        return False
    if signals.pre_init.has_listeners(model) or signals.post_init.has_listeners(model):
        return False
    for field in model._meta.concrete_fields:
        descriptor = model.__dict__.get(field.attname)
        if type(descriptor) not in (DeferredAttribute, ForeignKeyDeferredAttribute):
            return False
    return True


_cache: dict = {}


def columns(model, alias: str, using: str = "default") -> Columns:
    """The (cached) Columns of `model` under `alias` for this database's backend."""
    key = (model, alias, using, connections[using].vendor)
    found = _cache.get(key)
    if found is None:
        found = _cache[key] = Columns(model, alias, using)
    return found


def set_related(instance, field_name: str, value) -> None:
    """Attach an already loaded related object, as select_related would."""
    instance._meta.get_field(field_name).set_cached_value(instance, value)


def one_of(connection, column_sql: str, values: list) -> tuple[str, list]:
    """`column IN (...)` as SQL and params: one array on PostgreSQL.

    One value is `column = %s`: with equality on every column of a unique
    index the planner looks up one row whatever its statistics say, where
    `= ANY(array)` on the index's second column became, on a freshly
    imported table without statistics, a scan of the organization's
    participants filtered by reference (0.44 ms instead of 0.14 ms for the
    single event's first read; docs/performance.md)."""
    if len(values) == 1:
        return f"{column_sql} = %s", list(values)
    if connection.vendor == "postgresql":
        return f"{column_sql} = ANY(%s)", [values]
    return f"{column_sql} IN ({', '.join(['%s'] * len(values))})", list(values)
