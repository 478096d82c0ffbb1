"""Lookups that take any value a URL can carry without failing in the database.

Every admin changelist filters by `?<field>=<value>` for any field of its
model (Django's, and third-party admins', as well as Baton's), and the
console passes numbers from its query strings. Two kinds of value got past
`filter()` and only failed when the query ran, a 500 instead of the admin's
"invalid filter" page:

- **Integers beyond 64 bits.** Django answers `filter(id=10**20)` without
  asking the database: no integer column can hold the value, so nothing
  matches (`IntegerFieldOverflow`). It does that only for exact, gt, gte, lt
  and lte on integer fields themselves. `in` on an integer field and every
  comparison through a relation (`program=10**20`, `groups__in=…`,
  `user__gt=…`) still sent the value, which SQLite cannot bind
  (OverflowError). The lookups below apply Django's own rule to those cases,
  on every backend: such a value matches no row for exact and in, and every
  row or no row for the comparisons, as `IntegerGreaterThan` & co. do.
  (PostgreSQL compares such a value as numeric and finds nothing.)
- **Text for a duration or an IP address.** A DurationField lookup passed
  `'7'` on to the database unparsed, and SQLite, which stores microseconds,
  failed on it; a GenericIPAddressField lookup passed `'x'` on, and
  PostgreSQL's `inet` refused it. The lookups below parse such text as the
  field's form does (`'7'`, `'1 02:00:00'` and ISO 8601 for a duration, an
  IPv4 or IPv6 address) and refuse anything else with a ValidationError when
  the filter is built, which the admin shows as an invalid filter.

`install()` (called from `ProgramsConfig.ready`) registers them in place of
Django's, under the same lookup names.
"""

from __future__ import annotations

from django.core.exceptions import EmptyResultSet, FieldError, FullResultSet, ValidationError
from django.core.validators import validate_ipv46_address
from django.db.models import DurationField, ForeignObject, GenericIPAddressField, IntegerField
from django.db.models.expressions import ColPairs
from django.db.models.fields.related_lookups import (
    RelatedExact,
    RelatedGreaterThan,
    RelatedGreaterThanOrEqual,
    RelatedIn,
    RelatedLessThan,
    RelatedLessThanOrEqual,
)
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    In,
    LessThan,
    LessThanOrEqual,
)


def is_key_of(field, text) -> bool:
    """Whether `text` (from a form or a URL) can be a value of the key
    `field`: what the field reads, and no NUL character, which no text
    column holds (PostgreSQL stores none). Where Django filters by posted
    keys without its form checks, ask this first."""
    if "\x00" in str(text):
        return False
    try:
        field.to_python(text)
    except ValidationError:
        return False
    return True


def _column_range(lhs, connection) -> tuple[int | None, int | None]:
    """(min, max) of the integer column behind `lhs`, following a relation
    to the field it stores; (None, None) for anything else."""
    if isinstance(lhs, ColPairs):
        return None, None
    field = lhs.output_field
    try:
        while field.is_relation and (field.many_to_one or field.one_to_one):
            field = field.target_field
        return connection.ops.integer_field_range(field.get_internal_type())
    except (AttributeError, FieldError, KeyError):
        return None, None


def _out_of_range(value, low, high) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and ((low is not None and value < low) or (high is not None and value > high))
    )


class _RelatedIntegerOverflow:
    """IntegerFieldOverflow for a lookup through a relation."""

    underflow_exception = EmptyResultSet
    overflow_exception = EmptyResultSet

    def process_rhs(self, compiler, connection):
        low, high = _column_range(self.lhs, connection)
        if _out_of_range(self.rhs, low, high):
            below = low is not None and self.rhs < low
            raise self.underflow_exception if below else self.overflow_exception
        return super().process_rhs(compiler, connection)


class _InWithinRange:
    """`in`: values no column can hold are left out of the list; a list of
    nothing but such values matches no row."""

    def process_rhs(self, compiler, connection):
        if self.rhs_is_direct_value():
            low, high = _column_range(self.lhs, connection)
            if low is not None or high is not None:
                values = list(self.rhs)
                kept = [v for v in values if not _out_of_range(v, low, high)]
                if values and not kept:
                    raise EmptyResultSet
                self.rhs = kept
        return super().process_rhs(compiler, connection)


class IntegerFieldIn(_InWithinRange, In):
    pass


class RelatedInWithinRange(_InWithinRange, RelatedIn):
    pass


class RelatedExactWithinRange(_RelatedIntegerOverflow, RelatedExact):
    pass


class RelatedGreaterThanWithinRange(_RelatedIntegerOverflow, RelatedGreaterThan):
    underflow_exception = FullResultSet


class RelatedGreaterThanOrEqualWithinRange(_RelatedIntegerOverflow, RelatedGreaterThanOrEqual):
    underflow_exception = FullResultSet


class RelatedLessThanWithinRange(_RelatedIntegerOverflow, RelatedLessThan):
    overflow_exception = FullResultSet


class RelatedLessThanOrEqualWithinRange(_RelatedIntegerOverflow, RelatedLessThanOrEqual):
    overflow_exception = FullResultSet


class _ParsedText:
    """Text on the right-hand side is read (and refused) by `parse_text`
    when the filter is built, instead of reaching the database as it is."""

    @staticmethod
    def parse_text(field, text):
        raise NotImplementedError

    def get_prep_lookup(self):
        if self.rhs_is_direct_value():
            field = self.lhs.output_field
            if isinstance(self.rhs, str):
                self.rhs = self.parse_text(field, self.rhs)
            elif isinstance(self.rhs, (list, tuple, set)):
                self.rhs = [
                    self.parse_text(field, v) if isinstance(v, str) else v for v in self.rhs
                ]
        return super().get_prep_lookup()


def _duration(field, text):
    return field.to_python(text)


def _ip_address(field, text):
    if not text.strip():
        return text  # "no address", as Django stores it (NULL)
    validate_ipv46_address(text.strip())
    return field.to_python(text)


def _parsed_lookups(name: str, parse) -> list[type]:
    return [
        type(f"{name}{base.__name__}", (_ParsedText, base), {"parse_text": staticmethod(parse)})
        for base in (Exact, In, GreaterThan, GreaterThanOrEqual, LessThan, LessThanOrEqual)
    ]


def install() -> None:
    """Register the lookups above in place of Django's (same lookup names)."""
    IntegerField.register_lookup(IntegerFieldIn)
    for lookup in _parsed_lookups("Duration", _duration):
        DurationField.register_lookup(lookup)
    for lookup in _parsed_lookups("IPAddress", _ip_address):
        GenericIPAddressField.register_lookup(lookup)
    for lookup in (
        RelatedInWithinRange,
        RelatedExactWithinRange,
        RelatedGreaterThanWithinRange,
        RelatedGreaterThanOrEqualWithinRange,
        RelatedLessThanWithinRange,
        RelatedLessThanOrEqualWithinRange,
    ):
        ForeignObject.register_lookup(lookup)
