"""Program health figures for the dashboard (reads only).

Every figure is a bounded query: a fixed window (14 days, 8 weeks) over
indexed columns, or a grouped count over one program's enrollments and
steps. Nothing scans the whole audit trail or exception history.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from participants.models import Enrollment, EnrollmentState, StepInstance, StepState
from programs.models import ACTIVE_EXCEPTION_STATES, AuditEvent, ExceptionState, OpsException

DAYS = 14
WEEKS = 8
MEDIAN_SAMPLE = 2000
AGING_BUCKETS = [
    ("< 1 day", timedelta(0), timedelta(days=1)),
    ("1-3 days", timedelta(days=1), timedelta(days=3)),
    ("3-7 days", timedelta(days=3), timedelta(days=7)),
    ("> 7 days", timedelta(days=7), None),
]
# Audit actions that are a person stepping in (actor_kind="user").
HUMAN_ACTION_PREFIXES = ("exception.", "enrollment.", "step.")
AUTOMATED_VIA = ("event", "message")


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


def exceptions_per_day(program, now) -> list[dict]:
    since = (now - timedelta(days=DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    base = OpsException.objects.filter(organization_id=program.organization_id, program=program)
    opened = dict(
        base.filter(first_seen_at__gte=since)
        .annotate(day=TruncDate("first_seen_at"))
        .values("day")
        .annotate(n=Count("pk"))
        .values_list("day", "n")
    )
    resolved = dict(
        base.filter(resolved_at__gte=since, state=ExceptionState.RESOLVED)
        .annotate(day=TruncDate("resolved_at"))
        .values("day")
        .annotate(n=Count("pk"))
        .values_list("day", "n")
    )
    days = [(since + timedelta(days=i)).date() for i in range(DAYS)]
    return [{"day": d, "opened": opened.get(d, 0), "resolved": resolved.get(d, 0)} for d in days]


def backlog_aging(program, now) -> list[dict]:
    aggregates = {}
    for i, (_label, low, high) in enumerate(AGING_BUCKETS):
        cond = Q(first_seen_at__lte=now - low)
        if high is not None:
            cond &= Q(first_seen_at__gt=now - high)
        aggregates[f"b{i}"] = Count("pk", filter=cond)
    aggregates["overdue"] = Count("pk", filter=Q(due_by__lt=now))
    result = OpsException.objects.filter(
        organization_id=program.organization_id,
        program=program,
        state__in=ACTIVE_EXCEPTION_STATES,
    ).aggregate(**aggregates)
    buckets = [
        {"label": label, "n": result[f"b{i}"]} for i, (label, _l, _h) in enumerate(AGING_BUCKETS)
    ]
    return buckets, result["overdue"]


def median_time_to_resolve(program, now) -> tuple[timedelta | None, int]:
    """Median over the most recent resolved items of the last 30 days (sampled
    to MEDIAN_SAMPLE so the page stays fast)."""
    rows = list(
        OpsException.objects.filter(
            organization_id=program.organization_id,
            program=program,
            state=ExceptionState.RESOLVED,
            resolved_at__gte=now - timedelta(days=30),
        )
        .order_by("-resolved_at")
        .values_list("first_seen_at", "resolved_at")[:MEDIAN_SAMPLE]
    )
    if not rows:
        return None, 0
    seconds = statistics.median((r - f).total_seconds() for f, r in rows)
    return timedelta(seconds=round(seconds)), len(rows)


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


def automation_rate(program) -> tuple[float | None, int, int]:
    result = StepInstance.objects.filter(
        enrollment__organization_id=program.organization_id,
        enrollment__program=program,
        state=StepState.COMPLETED,
    ).aggregate(total=Count("pk"), automated=Count("pk", filter=Q(completed_via__in=AUTOMATED_VIA)))
    if not result["total"]:
        return None, 0, 0
    return (
        round(100 * result["automated"] / result["total"], 1),
        result["automated"],
        result["total"],
    )


def strain_index(program, now) -> list[dict]:
    """Manual interventions (audit rows by people on exceptions, enrollments
    and steps of the organization) per 100 active participants, per week.

    Active participants are counted now, not as of each week (the history of
    states is not kept per week); the latest week is the exact figure."""
    active = Enrollment.objects.filter(
        organization_id=program.organization_id, program=program, state=EnrollmentState.ACTIVE
    ).count()
    start = (now - timedelta(weeks=WEEKS)).replace(hour=0, minute=0, second=0, microsecond=0)
    human = Q()
    for prefix in HUMAN_ACTION_PREFIXES:
        human |= Q(action__startswith=prefix)
    aggregates = {}
    edges = [start + timedelta(weeks=i) for i in range(WEEKS + 1)]
    edges[-1] = now
    for i in range(WEEKS):
        aggregates[f"w{i}"] = Count(
            "pk", filter=Q(created_at__gte=edges[i], created_at__lt=edges[i + 1])
        )
    result = AuditEvent.objects.filter(
        human,
        organization_id=program.organization_id,
        actor_kind="user",
        created_at__gte=start,
    ).aggregate(**aggregates)
    weeks = []
    for i in range(WEEKS):
        n = result[f"w{i}"]
        weeks.append(
            {
                "week": edges[i].date(),
                "interventions": n,
                "per_100": round(100 * n / active, 1) if active else None,
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
    now = timezone.now()
    per_day = exceptions_per_day(program, now)
    aging, overdue = backlog_aging(program, now)
    median, sample = median_time_to_resolve(program, now)
    rate, automated, completions = automation_rate(program)
    weeks, active = strain_index(program, now)
    return {
        "now": now,
        "funnel": funnel(program),
        "per_day": per_day,
        "per_day_chart": paired_chart(per_day),
        "opened_total": sum(r["opened"] for r in per_day),
        "resolved_total": sum(r["resolved"] for r in per_day),
        "aging": aging,
        "aging_chart": bar_chart(
            [b["n"] for b in aging], [b["label"] for b in aging], width=360, height=150
        ),
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
