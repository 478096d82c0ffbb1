"""Console pages of the participants app: the participant timeline and the
program health dashboard. Organization scoping: another organization's
enrollment or program is a 404."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import QueryDict
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from participants.console import health
from participants.console.timeline import Cursor, step_rows, timeline_page
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
    wanted = [k for k in request.GET.getlist("kind") if k and len(k) <= 40]
    cursor = Cursor.decode(request.GET.get("before", ""))
    page = timeline_page(enrollment, cursor=cursor, kinds=wanted)
    wanted = [k for k in wanted if k in page.kinds]
    newest_first = request.GET.get("order") == "desc"
    # Pages run from the newest rows backwards; each is shown in the order asked.
    rows = page.rows if newest_first else list(reversed(page.rows))
    keep = QueryDict(mutable=True)
    keep.setlist("kind", wanted)
    if newest_first:
        keep["order"] = "desc"
    older = None
    if page.next_cursor is not None:
        older = keep.copy()
        older["before"] = page.next_cursor.encode()
    return render(
        request,
        "console/timeline.html",
        {
            "enrollment": enrollment,
            "rows": rows,
            "page_rows": page.page_rows,
            "paged": cursor is not None,
            "older_query": older.urlencode() if older is not None else "",
            "latest_query": keep.urlencode(),
            "kinds": page.kinds,
            "wanted": wanted,
            "newest_first": newest_first,
            "failed": page.failed,
            "steps": step_rows(enrollment),
        },
    )


@login_required
def programs(request):
    items = list(scope_queryset(Program.objects.select_related("organization"), request.user))
    figures = health.program_list_figures(items, timezone.now())
    rows = [(program, figures[program.pk]) for program in items]
    return render(request, "console/programs.html", {"rows": rows})


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
