"""Program health figures for the dashboard (reads only).

History (opened vs resolved per day, the strain index per week, the median
time to resolve, the automation rate) is read from the daily
`ProgramMetricsSnapshot` rows (participants.services.metrics), so the page
never scans the audit trail or the exception history. Today's counts, the
backlog, the funnel and the SLA rates per step are live, bounded queries.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from participants.models import (
    NON_TERMINAL_STATES,
    Enrollment,
    EnrollmentState,
    ProgramMetricsSnapshot,
    StepInstance,
    StepState,
)
from participants.services.metrics import (
    AUTOMATED_VIA,
    active_participants,
    manual_interventions,
    weighted_median,
)
from programs.models import ACTIVE_EXCEPTION_STATES, ExceptionState, OpsException

DAYS = 14
WEEKS = 8
MEDIAN_SAMPLE = 2000
BACKLOG_CAP = 10_000
AGING_BUCKETS = [
    ("< 1 day", timedelta(0), timedelta(days=1)),
    ("1-3 days", timedelta(days=1), timedelta(days=3)),
    ("3-7 days", timedelta(days=3), timedelta(days=7)),
    ("> 7 days", timedelta(days=7), None),
]


@dataclass
class Bar:
    label: str
    value: float
    x: float = 0
    y: float = 0
    w: float = 0
    h: float = 0


def funnel(program) -> list[dict]:
    counts = dict(
        Enrollment.objects.filter(organization_id=program.organization_id, program=program)
        .values_list("state")
        .annotate(n=Count("pk"))
        .values_list("state", "n")
    )
    total = sum(counts.values()) or 1
    return [
        {
            "state": value,
            "label": label,
            "n": counts.get(value, 0),
            "share": round(100 * counts.get(value, 0) / total),
        }
        for value, label in EnrollmentState.choices
    ]


def _snapshots(program, since_day) -> dict:
    """The program's daily snapshots from `since_day` on, by day (one query)."""
    return {
        snap.day: snap
        for snap in ProgramMetricsSnapshot.objects.filter(program=program, day__gte=since_day)
    }


def _today_live(program, now) -> dict:
    """Today's figures, counted live over today's rows only: items opened and
    resolved (with the median time to resolve), manual interventions, and
    step completions. Today's provisional snapshot row is ignored."""
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    base = OpsException.objects.filter(organization_id=program.organization_id, program=program)
    # One query for both: today's rows are few (opened today or resolved today).
    rows = list(
        base.filter(Q(first_seen_at__gte=start) | Q(resolved_at__gte=start))
        .order_by()
        .values_list("first_seen_at", "resolved_at", "state")
    )
    opened = sum(1 for first, _r, _s in rows if first >= start)
    resolved = [
        (first, at)
        for first, at, state in rows
        if state == ExceptionState.RESOLVED and at is not None and at >= start
    ]
    steps = StepInstance.objects.filter(
        enrollment__program=program, state=StepState.COMPLETED, completed_at__gte=start
    ).aggregate(
        automated=Count("pk", filter=Q(completed_via__in=AUTOMATED_VIA)),
        manual=Count("pk", filter=Q(completed_via="coordinator")),
    )
    return {
        "day": start.date(),
        "opened": opened,
        "resolved": len(resolved),
        "median_seconds": (
            statistics.median((r - f).total_seconds() for f, r in resolved) if resolved else None
        ),
        "interventions": manual_interventions(program, start, now + timedelta(1)),
        "steps_automated": steps["automated"],
        "steps_manual": steps["manual"],
    }


def exceptions_per_day(program, now, snapshots=None, today=None) -> list[dict]:
    """Opened vs resolved per day for DAYS days: past days from the daily
    snapshots, today live."""
    days = [(now - timedelta(days=DAYS - 1 - i)).date() for i in range(DAYS)]
    snapshots = _snapshots(program, days[0]) if snapshots is None else snapshots
    today = _today_live(program, now) if today is None else today
    rows = []
    for day in days:
        if day == now.date():
            rows.append({"day": day, "opened": today["opened"], "resolved": today["resolved"]})
            continue
        snap = snapshots.get(day)
        rows.append(
            {
                "day": day,
                "opened": snap.exceptions_opened if snap else 0,
                "resolved": snap.exceptions_resolved if snap else 0,
            }
        )
    return rows


def _capped_counts(querysets, cap) -> list[tuple[int, bool]]:
    """COUNT of each queryset up to `cap` rows, all in one statement: each is
    a COUNT over a LIMITed subquery, which stops reading at cap + 1 rows."""
    parts, params = [], []
    for i, qs in enumerate(querysets):
        inner = qs.order_by()[: cap + 1]
        sql, inner_params = inner.query.get_compiler(using=inner.db).as_sql()
        parts.append(f"(SELECT COUNT(*) FROM ({sql}) c{i})")  # noqa: S608 (compiled SQL, %s params)
        params.extend(inner_params)
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)
        counts = cursor.fetchone()
    return [(min(int(n), cap), int(n) > cap) for n in counts]


def _count_text(n: int, capped: bool) -> str:
    return f"{n:,}+" if capped else f"{n:,}"


def _active_items(program):
    """The program's active items, as rows of opsexc_program_backlog_idx
    (whose columns answer every count below without reading the table)."""
    return OpsException.objects.filter(
        organization_id=program.organization_id,
        program=program,
        state__in=ACTIVE_EXCEPTION_STATES,
    ).values("first_seen_at")


def backlog_aging(program, now):
    """Active items by age bucket, and how many are past their SLA.

    Counted index-only (opsexc_program_backlog_idx), each count capped at
    BACKLOG_CAP: a backlog of a hundred thousand items shows "10,000+"
    rather than counting every row on each page view."""
    active = _active_items(program)
    querysets = []
    for _label, low, high in AGING_BUCKETS:
        qs = active.filter(first_seen_at__lte=now - low)
        if high is not None:
            qs = qs.filter(first_seen_at__gt=now - high)
        querysets.append(qs)
    querysets.append(active.filter(due_by__lt=now))
    *counts, (overdue, overdue_capped) = _capped_counts(querysets, BACKLOG_CAP)
    buckets = [
        {"label": label, "n": n, "capped": capped, "text": _count_text(n, capped)}
        for (label, _l, _h), (n, capped) in zip(AGING_BUCKETS, counts, strict=True)
    ]
    return buckets, {
        "n": overdue,
        "capped": overdue_capped,
        "text": _count_text(overdue, overdue_capped),
    }


def program_list_figures(programs, now) -> dict[int, dict]:
    """{program id: figures} for the program list: enrollments in progress
    and active exception items, with how many are past their SLA. Two
    statements for all the programs, every count index-only and capped at
    BACKLOG_CAP like the dashboard's backlog, so a list of large programs
    stays as quick as one of small ones."""
    programs = list(programs)
    if not programs:
        return {}
    item_querysets = []
    enrollment_querysets = []
    for program in programs:
        active = _active_items(program)
        item_querysets += [active, active.filter(due_by__lt=now)]
        enrollment_querysets.append(
            Enrollment.objects.filter(
                organization_id=program.organization_id,
                program=program,
                state__in=NON_TERMINAL_STATES,
            ).values("pk")
        )
    items = _capped_counts(item_querysets, BACKLOG_CAP)
    enrollments = _capped_counts(enrollment_querysets, BACKLOG_CAP)
    figures = {}
    for i, program in enumerate(programs):
        (open_n, open_capped), (late_n, late_capped) = items[2 * i], items[2 * i + 1]
        in_progress, in_progress_capped = enrollments[i]
        figures[program.pk] = {
            "in_progress": _count_text(in_progress, in_progress_capped),
            "open": _count_text(open_n, open_capped),
            "past_sla": late_n,
            "past_sla_text": _count_text(late_n, late_capped),
        }
    return figures


def median_time_to_resolve(
    program, now, snapshots=None, today=None
) -> tuple[timedelta | None, int]:
    """Median time to resolve over the last 30 days: the daily medians of the
    snapshots, weighted by how many items each day resolved. Returns
    (median, items resolved)."""
    since = (now - timedelta(days=29)).date()
    snapshots = _snapshots(program, since) if snapshots is None else snapshots
    today = _today_live(program, now) if today is None else today
    pairs = [
        (s.median_resolve_seconds, s.exceptions_resolved)
        for day, s in snapshots.items()
        if since <= day < today["day"] and s.median_resolve_seconds is not None
    ]
    if today["median_seconds"] is not None:
        pairs.append((today["median_seconds"], today["resolved"]))
    if not pairs:
        return None, 0
    return timedelta(seconds=round(weighted_median(pairs))), sum(n for _, n in pairs)


def sla_by_step(program) -> list[dict]:
    rows = (
        StepInstance.objects.filter(
            enrollment__organization_id=program.organization_id, enrollment__program=program
        )
        .exclude(due_at__isnull=True, overdue_at__isnull=True)
        .values("step_key", "title")
        .annotate(total=Count("pk"), breached=Count("pk", filter=Q(overdue_at__isnull=False)))
        .order_by("step_key")
    )
    out = []
    for row in rows:
        rate = 100 * row["breached"] / row["total"] if row["total"] else 0
        out.append({**row, "rate": round(rate, 1)})
    return out


def automation_rate(program, now, snapshots=None, today=None) -> tuple[float | None, int, int]:
    """Share of step completions in the last 30 days (snapshots, today live)
    that needed no person: (rate, automated, total)."""
    since = (now - timedelta(days=29)).date()
    snapshots = _snapshots(program, since) if snapshots is None else snapshots
    today = _today_live(program, now) if today is None else today
    rows = [s for day, s in snapshots.items() if since <= day < today["day"]]
    automated = sum(s.steps_automated for s in rows) + today["steps_automated"]
    total = automated + sum(s.steps_manual for s in rows) + today["steps_manual"]
    if not total:
        return None, 0, 0
    return round(100 * automated / total, 1), automated, total


def strain_index(program, now, snapshots=None, today=None) -> tuple[list[dict], int]:
    """Manual interventions (actions by people on queue items, enrollments and
    steps) per 100 active participants, per week, for WEEKS weeks ending
    today. Past days come from the daily snapshots, today live; each week is
    divided by the active participants at its end (now, for this week)."""
    active = active_participants(program, now)
    first = (now - timedelta(weeks=WEEKS) + timedelta(days=1)).date()
    snapshots = _snapshots(program, first) if snapshots is None else snapshots
    today = _today_live(program, now) if today is None else today
    weeks = []
    for i in range(WEEKS):
        week_days = [first + timedelta(days=7 * i + d) for d in range(7)]
        n = 0
        end_active = None
        for day in week_days:
            if day == now.date():
                n += today["interventions"]
                end_active = active
            elif day in snapshots:
                n += snapshots[day].manual_interventions
                end_active = snapshots[day].active_participants
        weeks.append(
            {
                "week": week_days[0],
                "interventions": n,
                "per_100": round(100 * n / end_active, 1) if end_active else None,
            }
        )
    return weeks, active


def bar_chart(values: list[float], labels: list[str], *, width=560, height=160, pad=24):
    """Geometry of a simple bar chart for server-side SVG."""
    top = max(values) if values and max(values) > 0 else 1
    n = max(len(values), 1)
    slot = (width - pad) / n
    bars = []
    for i, (v, label) in enumerate(zip(values, labels, strict=True)):
        h = (height - pad) * (v / top)
        bars.append(
            Bar(
                label=label,
                value=v,
                x=pad + i * slot + slot * 0.15,
                y=height - pad - h,
                w=slot * 0.7,
                h=h,
            )
        )
    return {"bars": bars, "width": width, "height": height, "base": height - pad, "top": top}


def paired_chart(rows, *, width=560, height=170, pad=24):
    """Opened vs resolved per day: two bars per day."""
    top = max([max(r["opened"], r["resolved"]) for r in rows] + [1])
    n = max(len(rows), 1)
    slot = (width - pad) / n
    out = []
    for i, r in enumerate(rows):
        ho = (height - pad) * r["opened"] / top
        hr = (height - pad) * r["resolved"] / top
        x = pad + i * slot
        out.append(
            {
                "label": r["day"].strftime("%d"),
                "opened": r["opened"],
                "resolved": r["resolved"],
                "ox": x + slot * 0.1,
                "oy": height - pad - ho,
                "oh": ho,
                "rx": x + slot * 0.5,
                "ry": height - pad - hr,
                "rh": hr,
                "w": slot * 0.38,
                "tx": x + slot * 0.5,
            }
        )
    return {
        "days": out,
        "width": width,
        "height": height,
        "base": height - pad,
        "top": top,
        "ty": height - 8,
    }


def human_duration(value: timedelta | None) -> str:
    if value is None:
        return "—"
    minutes = int(value.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def program_health(program) -> dict:
    """Everything the dashboard shows. History (per day, per week, medians,
    automation) comes from ProgramMetricsSnapshot in one query; today's
    counts, the backlog, the funnel and SLA rates are live."""
    now = timezone.now()
    first = min(
        (now - timedelta(weeks=WEEKS) + timedelta(days=1)).date(), (now - timedelta(days=29)).date()
    )
    snapshots = _snapshots(program, first)
    today = _today_live(program, now)
    per_day = exceptions_per_day(program, now, snapshots, today)
    aging, overdue = backlog_aging(program, now)
    median, sample = median_time_to_resolve(program, now, snapshots, today)
    rate, automated, completions = automation_rate(program, now, snapshots, today)
    weeks, active = strain_index(program, now, snapshots, today)
    return {
        "now": now,
        "funnel": funnel(program),
        "per_day": per_day,
        "per_day_chart": paired_chart(per_day),
        "opened_total": sum(r["opened"] for r in per_day),
        "resolved_total": sum(r["resolved"] for r in per_day),
        "aging": aging,
        "aging_chart": bar_chart(
            [b["n"] for b in aging],
            [f"{b['label']} ({b['text']})" for b in aging],
            width=360,
            height=150,
        ),
        "aging_capped": any(b["capped"] for b in aging) or overdue["capped"],
        "backlog_cap": f"{BACKLOG_CAP:,}",
        "overdue": overdue,
        "median": median,
        "median_text": human_duration(median),
        "median_sample": sample,
        "sla": sla_by_step(program),
        "automation_rate": rate,
        "automated": automated,
        "completions": completions,
        "weeks": weeks,
        "weeks_chart": bar_chart(
            [w["per_100"] or 0 for w in weeks], [w["week"].strftime("%b %d") for w in weeks]
        ),
        "active": active,
        "days": DAYS,
    }
