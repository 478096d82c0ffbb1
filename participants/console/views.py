"""Console pages of the participants app: the participant timeline and the
program health dashboard. Organization scoping: another organization's
enrollment or program is a 404."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render

from participants.console import health
from participants.console.timeline import MAX_ROWS, build_timeline, step_rows
from participants.models import Enrollment
from programs.models import Program
from programs.security.audit import audited_read
from programs.tenancy import scope_queryset


@login_required
@audited_read("participant.timeline_viewed", object_type="participants.enrollment")
def timeline(request, pk):
    enrollment = get_object_or_404(
        scope_queryset(
            Enrollment.objects.select_related("participant", "program", "program_version"),
            request.user,
        ),
        pk=pk,
    )
    rows, failed = build_timeline(enrollment)
    kinds = sorted({r.kind for r in rows})
    wanted = [k for k in request.GET.getlist("kind") if k in kinds]
    if wanted:
        rows = [r for r in rows if r.kind in wanted]
    newest_first = request.GET.get("order") == "desc"
    total = len(rows)
    rows = list(reversed(rows))[:MAX_ROWS] if newest_first else rows[-MAX_ROWS:]
    return render(
        request,
        "console/timeline.html",
        {
            "enrollment": enrollment,
            "rows": rows,
            "total": total,
            "truncated": total > MAX_ROWS,
            "max_rows": MAX_ROWS,
            "kinds": kinds,
            "wanted": wanted,
            "newest_first": newest_first,
            "failed": failed,
            "steps": step_rows(enrollment),
        },
    )


@login_required
def programs(request):
    items = scope_queryset(Program.objects.select_related("organization"), request.user)
    return render(request, "console/programs.html", {"programs": list(items)})


@login_required
def dashboard(request, pk):
    program = get_object_or_404(
        scope_queryset(Program.objects.select_related("organization"), request.user), pk=pk
    )
    return render(
        request,
        "console/dashboard.html",
        {"program": program, **health.program_health(program)},
    )
