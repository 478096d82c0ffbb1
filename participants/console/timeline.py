"""The participant timeline: one enrollment's story in time order.

Rows come from the registry (programs.registries.registry.timeline_contributors:
participants adds transitions, steps and partner events; messaging and
integrations add messages and deliveries) plus the exception-queue items
about the enrollment or its steps and those items' audit rows. The page
never imports messaging or integrations.
"""

from __future__ import annotations

import logging

from django.db.models import Q
from django.urls import reverse

from participants.models import Enrollment, StepInstance
from programs.models import AuditEvent, OpsException
from programs.registries import registry
from programs.timeline import TimelineRow

logger = logging.getLogger(__name__)
MAX_ROWS = 500


def enrollment_exceptions(enrollment: Enrollment) -> list[OpsException]:
    """Queue items whose subject is the enrollment or one of its steps."""
    step_ids = [str(pk) for pk in enrollment.steps.values_list("pk", flat=True)]
    return list(
        OpsException.objects.filter(
            Q(subject_type="participants.enrollment", subject_id=str(enrollment.pk))
            | Q(subject_type="participants.stepinstance", subject_id__in=step_ids),
            organization_id=enrollment.organization_id,
        ).order_by("first_seen_at", "pk")
    )


def exception_rows(exceptions) -> list[TimelineRow]:
    rows = []
    by_id = {str(e.pk): e for e in exceptions}
    if not by_id:
        return rows
    audits = AuditEvent.objects.filter(
        object_type="programs.opsexception", object_id__in=list(by_id)
    ).order_by("created_at", "id")[: MAX_ROWS * 2]
    for event in audits:
        item = by_id[event.object_id]
        verb = event.action.removeprefix("exception.").replace("_", " ")
        detail = event.reason if event.action != "exception.opened" else item.get_severity_display()
        rows.append(
            TimelineRow(
                at=event.created_at,
                kind="exception",
                title=f"#{item.pk} {verb}: {item.title}",
                detail=detail,
                actor=event.actor_label,
                url=reverse("console:item", args=[item.pk]),
            )
        )
    return rows


def build_timeline(enrollment: Enrollment) -> tuple[list[TimelineRow], list[str]]:
    """Every row for the enrollment, oldest first, and the names of any
    contributor that failed (its rows are missing; the page says so)."""
    rows: list[TimelineRow] = []
    failed = []
    for contributor in registry.timeline_contributors:
        try:
            rows.extend(contributor(enrollment))
        except Exception:  # one broken contributor must not hide the rest
            logger.exception("timeline contributor %r failed", contributor)
            failed.append(getattr(contributor, "__qualname__", repr(contributor)))
    rows.extend(exception_rows(enrollment_exceptions(enrollment)))
    rows.sort(key=lambda r: r.at)
    return rows, failed


def step_rows(enrollment: Enrollment) -> list[StepInstance]:
    return list(enrollment.steps.order_by("created_at", "id"))
