"""Reads behind the console queue pages.

Every queryset starts from `programs.tenancy.scope_queryset`, so a user only
ever sees items of their organizations. Counts are capped: a queue of a
million rows is never counted in full on a page view; the page shows
"1,000+" instead (`COUNT` over a `LIMIT`ed subquery stops early).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.utils import timezone

from programs.console.forms import parse_number
from programs.models import (
    ACTIVE_EXCEPTION_STATES,
    SEVERITY_RANK,
    AuditEvent,
    ExceptionState,
    OpsException,
    Program,
    Severity,
)
from programs.registries import registry
from programs.tenancy import scope_queryset

COUNT_CAP = 1000
FACET_CAP = 2000
PAGE_SIZE = 50

TABS = {
    "mine": "My queue",
    "unassigned": "Unassigned",
    "open": "All open",
}
AGE_BUCKETS = {
    "lt1h": ("Under 1 hour", timedelta(0), timedelta(hours=1)),
    "1h-1d": ("1 hour - 1 day", timedelta(hours=1), timedelta(days=1)),
    "1d-7d": ("1 - 7 days", timedelta(days=1), timedelta(days=7)),
    "gt7d": ("Over 7 days", timedelta(days=7), None),
}
DUE_CHOICES = {"overdue": "Overdue", "ontime": "Within SLA"}
ORDERING = ("-priority", "first_seen_at", "pk")
# What ORDERING needs selected: on PostgreSQL a tab is a UNION, sorted on its columns.
_KEY_FIELDS = ("pk", "priority", "first_seen_at")


@dataclass(frozen=True)
class CappedCount:
    value: int
    capped: bool

    def __str__(self):
        return f"{self.value:,}+" if self.capped else f"{self.value:,}"


def capped_count(queryset, cap: int | None = None) -> CappedCount:
    """Count up to `cap` rows (one query: COUNT over a LIMITed subquery)."""
    cap = COUNT_CAP if cap is None else cap
    n = queryset.order_by().values("pk")[: cap + 1].count()
    return CappedCount(min(n, cap), n > cap)


@dataclass
class QueueFilters:
    """Validated filters from the query string; unknown values are ignored."""

    kind: str = ""
    severity: str = ""
    program: int | None = None
    age: str = ""
    due: str = ""
    errors: list = field(default_factory=list)

    @classmethod
    def from_query(cls, params) -> QueueFilters:
        f = cls()
        kind = params.get("kind", "")
        if kind and kind in registry.exception_kinds:
            f.kind = kind
        elif kind:
            f.errors.append(f"unknown kind {kind!r} ignored")
        severity = params.get("severity", "")
        if severity in Severity.values:
            f.severity = severity
        elif severity:
            f.errors.append(f"unknown severity {severity!r} ignored")
        program = params.get("program", "")
        if (number := parse_number(program)) is not None:
            f.program = number
        elif program:
            f.errors.append(f"program must be a number, not {program!r}")
        age = params.get("age", "")
        if age in AGE_BUCKETS:
            f.age = age
        elif age:
            f.errors.append(f"unknown age bucket {age!r} ignored")
        due = params.get("due", "")
        if due in DUE_CHOICES:
            f.due = due
        elif due:
            f.errors.append(f"unknown due filter {due!r} ignored")
        return f

    def as_query(self, **override) -> dict:
        data = {
            "kind": self.kind,
            "severity": self.severity,
            "program": "" if self.program is None else self.program,
            "age": self.age,
            "due": self.due,
        }
        data.update(override)
        return {k: v for k, v in data.items() if v not in ("", None)}

    @property
    def active(self) -> bool:
        return bool(self.kind or self.severity or self.program is not None or self.age or self.due)


TAB_STATES = {
    # Open too: an item woken from a snooze before wake returned it to its
    # holder could stay open with an assignee, in no tab but "All open".
    "mine": (ExceptionState.CLAIMED, ExceptionState.SNOOZED, ExceptionState.OPEN),
    "unassigned": (ExceptionState.OPEN,),
    "open": tuple(ACTIVE_EXCEPTION_STATES),
}


def tab_queryset(tab: str, user, states=None):
    """Items of one queue tab within the user's organizations (unordered)."""
    qs = scope_queryset(OpsException.objects.all(), user)
    states = list(states or TAB_STATES[tab])
    qs = qs.filter(state__in=states) if len(states) > 1 else qs.filter(state=states[0])
    if tab == "mine":
        return qs.filter(assignee=user)
    if tab == "unassigned":
        return qs.filter(assignee__isnull=True)
    return qs


def apply_filters(qs, f: QueueFilters, now=None):
    now = now or timezone.now()
    if f.kind:
        qs = qs.filter(kind=f.kind)
    if f.severity:
        # The priority is the severity's rank (set with it by every writer):
        # filtering on it too keeps the queue index range tight.
        qs = qs.filter(severity=f.severity, priority=SEVERITY_RANK[f.severity])
    if f.program is not None:  # 0 is a number too: no program has it, so nothing matches
        qs = qs.filter(program_id=f.program)
    if f.age:
        _label, low, high = AGE_BUCKETS[f.age]
        qs = qs.filter(first_seen_at__lte=now - low)
        if high is not None:
            qs = qs.filter(first_seen_at__gt=now - high)
    if f.due == "overdue":
        qs = qs.filter(due_by__lt=now)
    elif f.due == "ontime":
        qs = qs.filter(due_by__gte=now)
    return qs


def _top_queryset(tab, user, f, n, fields, now=None, start=0):
    """Rows `start` to `n` of a tab in queue order, as a values_list queryset.

    With several states (All open, My queue) one ordered query would sort
    every active row; on PostgreSQL it is a UNION ALL of one index-ordered,
    LIMITed scan per state (the partial, covering index
    opsexc_active_queue_idx, or opsexc_mine_queue_idx for My queue), merged
    and cut again, so it reads at most n index entries per state.
    """
    states = TAB_STATES[tab]
    if len(states) == 1 or connection.vendor != "postgresql":
        qs = apply_filters(tab_queryset(tab, user), f, now=now)
        return qs.order_by(*ORDERING).values_list(*fields)[start:n]
    parts = [
        apply_filters(tab_queryset(tab, user, states=[state]), f, now=now)
        .order_by(*ORDERING)
        .values_list(*fields)[:n]
        for state in states
    ]
    union = parts[0].union(*parts[1:], all=True)
    return union.order_by(*ORDERING)[start:n]


def _top(tab, user, f, n, fields, now=None):
    return list(_top_queryset(tab, user, f, n, fields, now=now))


def queue_page(tab: str, user, f: QueueFilters, page: int = 1):
    """One page of a tab, sorted by priority then age; (items, has_next)."""
    offset = (page - 1) * PAGE_SIZE
    keys = _top(tab, user, f, offset + PAGE_SIZE + 1, ("pk", "priority", "first_seen_at"))
    ids = [k[0] for k in keys[offset:]]
    rows = OpsException.objects.filter(pk__in=ids).select_related("program", "assignee")
    by_id = {row.pk: row for row in rows}
    items = [by_id[pk] for pk in ids if pk in by_id]
    return items[:PAGE_SIZE], len(items) > PAGE_SIZE


def tab_counts(user) -> dict[str, CappedCount]:
    return {tab: capped_count(tab_queryset(tab, user)) for tab in TABS}


def facet_counts(tab: str, user, f: QueueFilters) -> dict:
    """The number of items the filters select (`total`), and per filter menu
    the count of each of its values within the tab and the *other* filters
    (a menu's count says what picking that value would list, whatever is
    picked in it now).

    Counted over the first FACET_CAP items of the tab in queue order, by one
    aggregate statement around the LIMITed queue query, so no row reaches
    Python: exact below the cap; above it the counts describe the most urgent
    FACET_CAP items and the page says so.
    """
    now = timezone.now()
    q = connection.ops.quote_name
    adapt = connection.ops.adapt_datetimefield_value
    # (SQL, params) of each value of each menu, over the sample's columns `t.`
    menus = {
        "kind": {k: (f"t.{q('kind')} = %s", [k]) for k in registry.exception_kinds},
        "severity": {s: (f"t.{q('severity')} = %s", [s]) for s in Severity.values},
        "age": {
            key: (
                (f"t.{q('first_seen_at')} <= %s", [adapt(now - low)])
                if high is None
                else (
                    f"t.{q('first_seen_at')} <= %s AND t.{q('first_seen_at')} > %s",
                    [adapt(now - low), adapt(now - high)],
                )
            )
            for key, (_label, low, high) in AGE_BUCKETS.items()
        },
        "due": {
            "overdue": (f"t.{q('due_by')} < %s", [adapt(now)]),
            "ontime": (f"t.{q('due_by')} >= %s", [adapt(now)]),
        },
    }
    picked = {name: getattr(f, name) for name in menus if getattr(f, name)}
    columns, params = [], []
    for name, values in menus.items():
        others = [menus[other][value] for other, value in picked.items() if other != name]
        for sql, values_params in values.values():
            parts = [(sql, values_params), *others]
            columns.append(
                "SUM(CASE WHEN "
                + " AND ".join(f"({part})" for part, _ in parts)
                + " THEN 1 ELSE 0 END)"
            )
            for _part, part_params in parts:
                params.extend(part_params)
    fields = ("pk", "priority", "first_seen_at", "kind", "severity", "due_by")
    unpicked = replace(f, kind="", severity="", age="", due="")
    sample = _top_queryset(tab, user, unpicked, FACET_CAP, fields, now=now)
    beyond = _top_queryset(
        tab, user, unpicked, FACET_CAP + 1, _KEY_FIELDS, now=now, start=FACET_CAP
    )
    # Every filter, up to one row past the cap: the total, and whether it is capped.
    selected = _top_queryset(tab, user, f, FACET_CAP + 1, _KEY_FIELDS, now=now)
    try:
        inner_sql, inner_params = sample.query.get_compiler(using=sample.db).as_sql()
        more_sql, more_params = beyond.query.get_compiler(using=beyond.db).as_sql()
        selected_sql, selected_params = selected.query.get_compiler(using=selected.db).as_sql()
    except EmptyResultSet:
        # The filters can match no row (a program id no column can hold):
        # Django says so instead of compiling the query.
        sums, more, selected_count = [0] * len(columns), 0, 0
    else:
        # One statement: the menus' sums over the sample, whether a row lies
        # beyond the sample, and how many rows every filter selects.
        sql = (
            f"SELECT {', '.join(columns)}, "  # noqa: S608 (quoted names and %s only)
            f"(SELECT COUNT(*) FROM ({more_sql}) m), "
            f"(SELECT COUNT(*) FROM ({selected_sql}) c) FROM ({inner_sql}) t"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, *more_params, *selected_params, *inner_params])
            *sums, more, selected_count = (int(v or 0) for v in cursor.fetchone())
    capped = selected_count > FACET_CAP
    total = min(selected_count, FACET_CAP)
    it = iter(sums)
    counts = {name: {value: next(it) for value in values} for name, values in menus.items()}
    return {
        "capped": capped or more > 0,
        "sample": f"{FACET_CAP:,}",
        "total": CappedCount(total, capped),
        **counts,
    }


def programs_for(user):
    return list(scope_queryset(Program.objects.all(), user).only("id", "name", "organization_id"))


def item_history(item: OpsException, limit: int = 100) -> list[AuditEvent]:
    """The item's audit rows, newest first (index object_type, object_id, created_at)."""
    return list(
        AuditEvent.objects.filter(
            object_type="programs.opsexception", object_id=str(item.pk)
        ).order_by("-created_at", "-id")[:limit]
    )
